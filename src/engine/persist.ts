import { sql } from "drizzle-orm";
import { hashValue } from "../core/hash.ts";
import type { ItemStatus } from "../core/status.ts";
import type { CommitStage } from "../core/types.ts";
import { upsertRows, type TargetRow } from "./commit-target.ts";
import type { RunContext, StagePlan } from "./context.ts";
import type { AttemptRecord } from "./llm-call.ts";
import { idRows } from "./inputs.ts";
import type { Database } from "../store/database.ts";

/** What executing one stage for one item came to, before it is written. */
export interface ItemResult {
  itemId: string;
  status: ItemStatus;
  inputHash?: string;
  reused: boolean;
  /** An existing output row (reuse rule hit). */
  outputId?: number;
  /** A new output row to record (computed now, or answered from the request cache). */
  output?: { value: unknown; status: ItemStatus; costUsd: number };
  errorClass?: string;
  errorMessage?: string;
  attempts: AttemptRecord[];
  targetRow?: TargetRow;
  cache?: { requestHash: string; provider: string; model: string; response: unknown };
}

/**
 * Write a group of results in one transaction: new outputs, attempts, request
 * cache entries, commit-target rows and the work rows themselves. Work rows
 * are only updated while this worker still holds the claim, so a worker that
 * lost its lease cannot overwrite the one that took over; `claimed_by` stays
 * on the finished row as the record of which worker computed it.
 */
export async function persistResults(ctx: RunContext, stage: StagePlan, all: ItemResult[]): Promise<{ committedChanged: number }> {
  if (all.length === 0) return { committedChanged: 0 };
  // Under a locked claim the caller's transaction already holds every row.
  if (ctx.lockedClaim) return writeResults(ctx, ctx.db, stage, all);
  if (ctx.soleWorker) return ctx.db.transaction((tx) => writeResults(ctx, tx, stage, all));
  return ctx.db.transaction(async (tx) => {
    // Only what this worker still holds is written, and the rows stay locked
    // until commit: a worker whose lease was taken over writes nothing at all
    // (no outputs, attempts or target rows), not just no status.
    // A row lock, not an update: no new row version or index entry per item.
    const owned = await tx.rows<{ item_id: string }>(sql`
      SELECT w.item_id
      FROM ${idRows(all.map((r) => r.itemId))}
      CROSS JOIN LATERAL (
        SELECT item_id FROM work
        WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index} AND item_id = i.item_id
          AND claimed_by = ${ctx.workerId}
        OFFSET 0 FOR UPDATE) w`);
    const mine = new Set(owned.map((r) => r.item_id));
    const results = all.filter((r) => mine.has(r.itemId));
    if (results.length < all.length) ctx.logger.warn(`stage ${stage.id}: ${all.length - results.length} result(s) dropped: their claim was taken over by another worker`);
    if (results.length === 0) return { committedChanged: 0 };
    return writeResults(ctx, tx, stage, results);
  });
}

/** The writes of `persistResults`, in the caller's transaction `tx`, for items this worker is known to hold. */
async function writeResults(ctx: RunContext, tx: Database, stage: StagePlan, results: ItemResult[]): Promise<{ committedChanged: number }> {
  const stageDef = ctx.pipeline.stages[stage.index]!;
  const outputIds = new Map<string, number>();
  const fresh = results.filter((r) => r.output && r.inputHash);
  if (fresh.length) {
    const payload = JSON.stringify(
      fresh.map((r) => ({
        item_id: r.itemId,
        input_hash: r.inputHash,
        status: r.output!.status,
        output: r.output!.value ?? null,
        output_hash: hashValue(r.output!.value ?? null, 32),
        cost_usd: r.output!.costUsd,
      })),
    );
    // ON CONFLICT DO UPDATE (a no-op update) so RETURNING yields the id
    // even when another worker recorded the same output first.
    const rows = await tx.rows<{ id: number | string; item_id: string }>(sql`
      INSERT INTO stage_outputs AS s (pipeline, stage_id, stage_version, item_id, input_hash, status, output, output_hash, cost_usd, run_id)
      SELECT ${ctx.pipeline.id}, ${stage.id}, ${stage.version}, x.item_id, x.input_hash, x.status, x.output, x.output_hash, x.cost_usd, ${ctx.runId}
      FROM jsonb_to_recordset(${payload}::jsonb) AS x(item_id text, input_hash text, status text, output jsonb, output_hash text, cost_usd float8)
      ON CONFLICT (pipeline, stage_id, stage_version, item_id, input_hash) DO UPDATE SET pipeline = s.pipeline
      RETURNING s.id, s.item_id`);
    for (const row of rows) outputIds.set(row.item_id, Number(row.id));
  }

  const attempts = results.flatMap((r) => r.attempts.map((a) => ({ ...a, item_id: r.itemId })));
  if (attempts.length) {
    await tx.rows(sql`
      INSERT INTO attempts (run_id, stage_id, item_id, attempt, provider, model, mode, request_hash, input_tokens, output_tokens, cached_tokens, cost_usd, list_cost_usd, latency_ms, error_class, error_message)
      SELECT ${ctx.runId}, ${stage.id}, x.item_id, x.attempt, NULLIF(x.provider, ''), NULLIF(x.model, ''), x.mode, x."requestHash", x."inputTokens", x."outputTokens", x."cachedTokens", x."costUsd", x."listCostUsd", x."latencyMs", x."errorClass", x."errorMessage"
      FROM jsonb_to_recordset(${JSON.stringify(attempts)}::jsonb) AS x(item_id text, attempt int, provider text, model text, mode text, "requestHash" text, "inputTokens" int, "outputTokens" int, "cachedTokens" int, "costUsd" float8, "listCostUsd" float8, "latencyMs" int, "errorClass" text, "errorMessage" text)`);
  }

  const cache = results.filter((r) => r.cache).map((r) => r.cache!);
  if (cache.length) {
    await tx.rows(sql`
      INSERT INTO request_cache (request_hash, provider, model, response)
      SELECT x."requestHash", x.provider, x.model, x.response
      FROM jsonb_to_recordset(${JSON.stringify(cache)}::jsonb) AS x("requestHash" text, provider text, model text, response jsonb)
      ON CONFLICT (request_hash) DO NOTHING`);
  }

  let committedChanged = 0;
  if (stageDef.kind === "commit") {
    const rows = results.filter((r) => r.targetRow && r.status === "committed").map((r) => r.targetRow!);
    committedChanged = await upsertRows(tx, stageDef as CommitStage, ctx.runId, stage.version, rows);
  }

  const updates = JSON.stringify(
    results.map((r) => ({
      item_id: r.itemId,
      status: r.status,
      input_hash: r.inputHash ?? null,
      output_id: r.outputId ?? outputIds.get(r.itemId) ?? null,
      reused: r.reused,
      attempts: r.attempts.length,
      error_class: r.errorClass ?? null,
      error_message: r.errorMessage ?? null,
    })),
  );
  // The recordset is MATERIALIZED so it is parsed once, whatever join order
  // the planner picks: then a nested loop of primary-key lookups, one per
  // result, costs the same however large the run (a hash join would scan the
  // whole stage for every group written).
  await tx.rows(sql`
    WITH x AS MATERIALIZED (
      SELECT * FROM jsonb_to_recordset(${updates}::jsonb) AS r(item_id text, status text, input_hash text, output_id bigint, reused boolean, attempts int, error_class text, error_message text)
    )
    UPDATE work w SET status = x.status, input_hash = x.input_hash, output_id = x.output_id, reused = x.reused,
      claimed_by = ${ctx.workerId},
      attempts = w.attempts + x.attempts, error_class = x.error_class, error_message = x.error_message,
      -- An item to retry waits its turn: exponential in the attempts spent so far.
      not_before = CASE WHEN x.status = 'failed_retryable'
        THEN now() + make_interval(secs => least(${ctx.options.backoffMaxMs / 1000}, ${ctx.options.backoffBaseMs / 1000} * power(2, w.attempts + x.attempts - 1)))
        END,
      updated_at = now()
    FROM x
    WHERE w.run_id = ${ctx.runId} AND w.stage_index = ${stage.index} AND w.item_id = x.item_id
      AND ${ctx.lockedClaim || ctx.soleWorker ? sql`TRUE` : sql`w.claimed_by = ${ctx.workerId}`}`);
  return { committedChanged };
}
