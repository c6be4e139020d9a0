import { sql } from "drizzle-orm";
import { hashValue } from "../core/hash.ts";
import type { ItemStatus } from "../core/status.ts";
import type { CommitStage } from "../core/types.ts";
import { upsertTarget, type TargetRow } from "./commit-target.ts";
import type { RunContext, StagePlan } from "./context.ts";
import type { AttemptRecord } from "./llm-call.ts";
import type { CompletionResult } from "../providers/types.ts";
import { idRows } from "../store/sql.ts";

/** What executing one stage for one item came to, before it is written. */
export interface ItemResult {
  itemId: string;
  status: ItemStatus;
  inputHash?: string;
  reused: boolean;
  /** An existing output row (reuse rule hit). */
  outputId?: number;
  /** A new output row to record (computed now, or answered from the request cache). `hash` is filled in when it is written. */
  output?: { value: unknown; status: ItemStatus; costUsd: number; hash?: string };
  /** The value and hash of the existing output row a reused result points at, when the caller asked for them. */
  existing?: { value: unknown; hash: string };
  errorClass?: string;
  errorMessage?: string;
  attempts: AttemptRecord[];
  targetRow?: TargetRow;
  cache?: { requestHash: string; provider: string; model: string; response: unknown };
  /** The provider answer this result came from, when it came from one (not written: duplicates of the item in the same chunk check it against their own rule). */
  answer?: CompletionResult;
}

/**
 * Write a group of results: new outputs, attempts, request cache entries,
 * commit-target rows and the work rows themselves, in one statement (one
 * round trip, atomic without a transaction of its own).
 *
 * Under a lease, only items this worker still holds are written, and their
 * rows are locked first: a worker whose lease was taken over writes nothing
 * at all for those items (no outputs, attempts or target rows), not just no
 * status. `claimed_by` stays on the finished row as the record of which
 * worker computed it.
 */
export async function persistResults(ctx: RunContext, stage: StagePlan, all: ItemResult[], { insert = false } = {}): Promise<{ committedChanged: number; dropped: string[]; replaced: string[] }> {
  if (all.length === 0) return { committedChanged: 0, dropped: [], replaced: [] };
  // A locked claim (rows locked by the caller's transaction) or a sole worker needs no check.
  const mode = insert ? "insert" : ctx.lockedClaim || ctx.soleWorker ? "unguarded" : "guarded";
  const { committedChanged, dropped, replaced } = await writeResults(ctx, stage, all, mode);
  if (dropped.length) {
    ctx.logger.warn(
      insert
        ? `stage ${stage.id}: ${dropped.length} result(s) dropped: another worker had already recorded those items at this stage`
        : `stage ${stage.id}: ${dropped.length} result(s) dropped: their claim was taken over by another worker`,
    );
  }
  return { committedChanged, dropped, replaced };
}

/**
 * How the work rows are written:
 * - `guarded`: rows claimed under a lease; only those this worker still holds
 *   are written, locked first.
 * - `unguarded`: rows nobody else can be working on (locked by the caller's
 *   transaction, or a sole worker's).
 * - `insert`: the rows do not exist yet (a later stage of a segment, see
 *   segment.ts): they are inserted with their results, and an item that
 *   already has a row at this stage is left alone, results and all.
 *
 * `dropped`: items whose work row this write did not record (a lost claim, a
 * row that already existed). `replaced`: items whose new output met one
 * already stored under the same key with a different value (another run got
 * there first): their work row points at that one.
 */
type WriteMode = "guarded" | "unguarded" | "insert";

async function writeResults(ctx: RunContext, stage: StagePlan, results: ItemResult[], mode: WriteMode): Promise<{ committedChanged: number; dropped: string[]; replaced: string[] }> {
  const stageDef = ctx.pipeline.stages[stage.index]!;
  const ids = results.map((r) => r.itemId);
  const owned =
    mode === "insert"
      ? sql`SELECT i.item_id FROM ${idRows(ids)}
        WHERE NOT EXISTS (SELECT 1 FROM work WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index} AND item_id = i.item_id)`
      : mode === "guarded"
        ? sql`SELECT w.item_id
        FROM ${idRows(ids)}
        CROSS JOIN LATERAL (
          SELECT item_id FROM work
          WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index} AND item_id = i.item_id
            AND claimed_by = ${ctx.workerId} AND status = 'processing'
          OFFSET 0 FOR UPDATE) w`
        : sql`SELECT item_id FROM ${idRows(ids)}`;

  // Members that are empty (null, false, 0) are left out: the payload is a
  // good part of what a write costs, and absent members read as NULL.
  const rows = JSON.stringify(
    results.map((r) => {
      const row: Record<string, unknown> = { item_id: r.itemId, status: r.status };
      if (r.inputHash) row.input_hash = r.inputHash;
      if (r.outputId !== undefined) row.output_id = r.outputId;
      if (r.reused) row.reused = true;
      if (r.attempts.length) row.attempts = r.attempts.length;
      if (r.errorClass) row.error_class = r.errorClass;
      if (r.errorMessage) row.error_message = r.errorMessage;
      // A new output row is recorded when there is one (computed now, or answered from the request cache).
      const fresh = r.output && r.inputHash ? r.output : undefined;
      if (fresh) {
        row.o_status = fresh.status;
        row.o_value = fresh.value ?? null;
        row.o_hash = fresh.hash ??= hashValue(fresh.value ?? null, 32);
        row.o_cost = fresh.costUsd;
      }
      return row;
    }),
  );
  const attempts = results.flatMap((r) => r.attempts.map((a) => ({ ...a, item_id: r.itemId })));
  const cache = results.filter((r) => r.cache).map((r) => ({ ...r.cache!, item_id: r.itemId }));
  const target = stageDef.kind === "commit" ? results.filter((r) => r.targetRow && r.status === "committed").map((r) => r.targetRow!) : [];

  const [row] = await ctx.db.rows<{ changed: number; dropped: string[] | null; replaced: string[] | null }>(sql`
    WITH owned AS MATERIALIZED (${owned}),
    x AS MATERIALIZED (
      SELECT r.* FROM jsonb_to_recordset(${rows}::jsonb) AS r(item_id text, status text, input_hash text, output_id bigint, reused boolean, attempts int, error_class text, error_message text, o_status text, o_value jsonb, o_hash text, o_cost float8)
      WHERE r.item_id IN (SELECT item_id FROM owned)
    ),
    -- ON CONFLICT DO UPDATE (a no-op update) so RETURNING yields the id
    -- even when another worker recorded the same output first.
    outs AS (
      INSERT INTO stage_outputs AS s (pipeline, stage_id, stage_version, item_id, input_hash, status, output, output_hash, cost_usd, run_id)
      SELECT ${ctx.pipeline.id}, ${stage.id}, ${stage.version}, x.item_id, x.input_hash, x.o_status, x.o_value, x.o_hash, x.o_cost, ${ctx.runId}
      FROM x WHERE x.o_status IS NOT NULL
      ON CONFLICT (pipeline, stage_id, stage_version, item_id, input_hash) DO UPDATE SET pipeline = s.pipeline
      RETURNING s.id, s.item_id, s.output_hash
    ),
    att AS (
      INSERT INTO attempts (run_id, stage_id, item_id, attempt, provider, model, mode, request_hash, input_tokens, output_tokens, cached_tokens, cost_usd, list_cost_usd, latency_ms, error_class, error_message)
      SELECT ${ctx.runId}, ${stage.id}, a.item_id, a.attempt, NULLIF(a.provider, ''), NULLIF(a.model, ''), a.mode, a."requestHash", a."inputTokens", a."outputTokens", a."cachedTokens", a."costUsd", a."listCostUsd", a."latencyMs", a."errorClass", a."errorMessage"
      FROM jsonb_to_recordset(${JSON.stringify(attempts)}::jsonb) AS a(item_id text, attempt int, provider text, model text, mode text, "requestHash" text, "inputTokens" int, "outputTokens" int, "cachedTokens" int, "costUsd" float8, "listCostUsd" float8, "latencyMs" int, "errorClass" text, "errorMessage" text)
      WHERE a.item_id IN (SELECT item_id FROM owned)
    ),
    cache AS (
      INSERT INTO request_cache (request_hash, provider, model, response)
      SELECT c."requestHash", c.provider, c.model, c.response
      FROM jsonb_to_recordset(${JSON.stringify(cache)}::jsonb) AS c(item_id text, "requestHash" text, provider text, model text, response jsonb)
      WHERE c.item_id IN (SELECT item_id FROM owned)
      ON CONFLICT (request_hash) DO NOTHING
    ),
    changed AS (${target.length ? upsertTarget(stageDef as CommitStage, ctx.runId, stage.version, target, sql`x.item_id IN (SELECT item_id FROM owned)`) : sql`SELECT NULL::text AS key WHERE false`}),
    -- MATERIALIZED, so the update below is a nested loop of primary-key
    -- lookups, one per result, costing the same however large the run.
    y AS MATERIALIZED (
      SELECT x.*, coalesce(x.output_id, outs.id) AS new_output_id FROM x LEFT JOIN outs ON outs.item_id = x.item_id
    ),
    upd AS (${
      mode === "insert"
        ? sql`INSERT INTO work (run_id, stage_index, item_id, stage_id, status, input_hash, output_id, reused, claimed_by, attempts, error_class, error_message, not_before)
          SELECT ${ctx.runId}, ${stage.index}, y.item_id, ${stage.id}, y.status, y.input_hash, y.new_output_id, coalesce(y.reused, false), ${ctx.workerId}, coalesce(y.attempts, 0), y.error_class, y.error_message,
            CASE WHEN y.status = 'failed_retryable'
              THEN now() + make_interval(secs => least(${ctx.options.backoffMaxMs / 1000}, ${ctx.options.backoffBaseMs / 1000} * power(2, coalesce(y.attempts, 0) - 1)))
            END
          FROM y
          ON CONFLICT DO NOTHING
          RETURNING item_id`
        : sql`UPDATE work w SET status = y.status, input_hash = y.input_hash, output_id = y.new_output_id, reused = coalesce(y.reused, false),
        claimed_by = ${ctx.workerId},
        attempts = w.attempts + coalesce(y.attempts, 0), error_class = y.error_class, error_message = y.error_message,
        -- An item to retry waits its turn: exponential in the attempts spent so far.
        not_before = CASE WHEN y.status = 'failed_retryable'
          THEN now() + make_interval(secs => least(${ctx.options.backoffMaxMs / 1000}, ${ctx.options.backoffBaseMs / 1000} * power(2, w.attempts + coalesce(y.attempts, 0) - 1)))
          END,
        updated_at = now()
      FROM y
      WHERE w.run_id = ${ctx.runId} AND w.stage_index = ${stage.index} AND w.item_id = y.item_id
      RETURNING w.item_id`
    })
    SELECT (SELECT count(*) FROM changed WHERE key IS NOT NULL)::int AS changed,
      (SELECT array_agg(i.item_id) FROM ${idRows(ids)} WHERE i.item_id NOT IN (SELECT item_id FROM upd)) AS dropped,
      (SELECT array_agg(outs.item_id) FROM outs JOIN x ON x.item_id = outs.item_id WHERE outs.output_hash IS DISTINCT FROM x.o_hash) AS replaced`);
  return { committedChanged: row!.changed, dropped: row!.dropped ?? [], replaced: row!.replaced ?? [] };
}

/**
 * Results written in groups as they complete (one write at a time), for work
 * whose results come one by one: realtime calls, batch repairs. A failed write
 * is remembered, not chained, so later groups are still written; callers check
 * `failed` before paying for more work, and `close()` writes what is left and
 * throws the first write error.
 */
export function groupWriter(write: (group: ItemResult[]) => Promise<void>, size: number, maxMs = Infinity) {
  let buffer: ItemResult[] = [];
  let writing = Promise.resolve();
  let lastWrite = Date.now();
  let error: unknown;
  const drain = () => {
    const group = buffer;
    buffer = [];
    lastWrite = Date.now();
    writing = writing.then(() => write(group)).catch((err) => {
      error ??= err;
    });
    return writing;
  };
  return {
    /** The first write error, if any. */
    get failed(): unknown {
      return error;
    },
    async add(result: ItemResult): Promise<void> {
      buffer.push(result);
      if (buffer.length >= size || Date.now() - lastWrite >= maxMs) await drain();
    },
    async close(): Promise<void> {
      await drain();
      if (error) throw error;
    },
  };
}
