import { sql, type SQL } from "drizzle-orm";
import type { Database } from "./database.ts";
import type { ResultsTarget, ResultToWrite, WriteOutcome } from "./results.ts";
import { anyText, idRows } from "./sql.ts";
import { ledgerOf, upsertTarget, writeTarget } from "./targets.ts";

/**
 * The write statement as it was before typed arrays and hash joins (see
 * `results.ts`), unchanged: the baseline `npm run bench -- write-path`
 * measures against in the same run, and what `test/results-before.store.test.ts`
 * checks the current statement writes the same rows as. Nothing else calls it.
 */

export async function writeResultsBefore(db: Database, to: ResultsTarget, results: readonly ResultToWrite[]): Promise<WriteOutcome> {
  if (results.length === 0) return { dropped: [], replaced: [] };
  const { runId, stage, workerId, mode } = to;
  const ids = results.map((r) => r.itemId);
  const rows = resultRows(results);
  const attempts = results.flatMap((r) => r.attempts.map((a) => ({ ...a, item_id: r.itemId })));
  const cache = results.filter((r) => r.cache).map((r) => ({ ...r.cache!, item_id: r.itemId }));
  const target = to.targetTable ? results.filter((r) => r.targetRow && r.status === "committed").map((r) => r.targetRow!) : [];
  if (to.targetDb && target.length) {
    const elsewhere = to.targetDb;
    // The items this worker still owns are locked first, so no one else records them while their rows are written there.
    return db.transaction(async (tx) => {
      const owned = new Set((await tx.rows<{ item_id: string }>(ownedItems(to, ids))).map((r) => r.item_id));
      const mine = target.filter((r) => owned.has(r.itemId));
      if (mine.length) await writeTarget(elsewhere, to.targetTable!, runId, stage.version, mine, to.targetColumns);
      return writeResultsBefore(tx, { ...to, targetTable: undefined, targetDb: undefined }, results);
    });
  }
  // An item to retry waits its turn: exponential in the attempts spent so far.
  const delays = `{${to.retryDelays.join(",")}}`;
  const waitAfter = (spent: SQL) => sql`now() + make_interval(secs => (${delays}::float8[])[least(${spent}, ${to.retryDelays.length - 1}) + 1])`;

  const [row] = await db.rows<{ dropped: string[] | null; replaced: string[] | null }>(sql`
    WITH owned AS MATERIALIZED (${ownedItems(to, ids)}),
    x AS MATERIALIZED (
      SELECT r.* FROM jsonb_to_recordset(${rows}::jsonb) AS r(item_id text, status text, input_hash text, output_id bigint, reused boolean, attempts int, error_class text, error_message text, review_id bigint, o_status text, o_value jsonb, o_hash text, o_cost float8)
      WHERE r.item_id IN (SELECT item_id FROM owned)
    ),
    -- ON CONFLICT DO UPDATE (a no-op update) so RETURNING yields the id
    -- even when another worker recorded the same output first.
    outs AS (
      INSERT INTO stage_outputs AS s (pipeline, stage_id, stage_version, item_id, input_hash, status, output, output_hash, cost_usd, run_id)
      SELECT ${to.pipeline}, ${stage.id}, ${stage.version}, x.item_id, x.input_hash, x.o_status, x.o_value, x.o_hash, x.o_cost, ${runId}
      FROM x WHERE x.o_status IS NOT NULL
      ON CONFLICT (pipeline, stage_id, stage_version, item_id, input_hash) DO UPDATE SET pipeline = s.pipeline
      RETURNING s.id, s.item_id, s.output_hash
    ),
    att AS (
      INSERT INTO attempts (run_id, stage_id, item_id, attempt, provider, model, mode, request_hash, input_tokens, output_tokens, cached_tokens, cost_usd, list_cost_usd, latency_ms, error_class, error_message)
      SELECT ${runId}, ${stage.id}, a.item_id, a.attempt, NULLIF(a.provider, ''), NULLIF(a.model, ''), a.mode, a."requestHash", a."inputTokens", a."outputTokens", a."cachedTokens", a."costUsd", a."listCostUsd", a."latencyMs", a."errorClass", a."errorMessage"
      FROM jsonb_to_recordset(${JSON.stringify(attempts)}::jsonb) AS a(item_id text, attempt int, provider text, model text, mode text, "requestHash" text, "inputTokens" int, "outputTokens" int, "cachedTokens" int, "costUsd" float8, "listCostUsd" float8, "latencyMs" int, "errorClass" text, "errorMessage" text)
      WHERE a.item_id IN (SELECT item_id FROM owned)
    ),
    -- Every answer paid for is kept, also one whose item another worker has
    -- recorded meanwhile: its request's claim is given up below, and a worker
    -- awaiting that request then finds the answer instead of paying again.
    cache AS (
      INSERT INTO request_cache (request_hash, provider, model, response)
      SELECT c."requestHash", c.provider, c.model, c.response
      FROM jsonb_to_recordset(${JSON.stringify(cache)}::jsonb) AS c(item_id text, "requestHash" text, provider text, model text, response jsonb)
      ON CONFLICT (request_hash) DO NOTHING
    ),${
      // An answer written gives its request's claim up in the same statement (see `cache.ts`, claimRequests).
      cache.length
        ? sql`
    released AS (
      DELETE FROM request_claims WHERE request_hash IN (
        SELECT request_hash FROM request_claims WHERE request_hash = ${anyText(cache.map((c) => c.requestHash))} AND worker_id = ${workerId}
        ORDER BY request_hash FOR UPDATE)
    ),`
        : sql``
    }
    ${
      target.length
        ? sql`changed AS (${upsertTarget(to.targetTable!, runId, stage.version, target, sql`x.item_id IN (SELECT item_id FROM owned)`, to.targetColumns)}),
    ledger AS (${ledgerOf(to.targetTable!, runId, "changed")}),`
        : sql``
    }
    -- MATERIALIZED, so the update below is a nested loop of primary-key
    -- lookups, one per result, costing the same however large the run.
    y AS MATERIALIZED (
      SELECT x.*, coalesce(x.output_id, outs.id) AS new_output_id FROM x LEFT JOIN outs ON outs.item_id = x.item_id
    ),
    upd AS (${
      mode === "insert"
        ? sql`INSERT INTO work (run_id, stage_index, item_id, stage_id, status, input_hash, output_id, reused, claimed_by, attempts, error_class, error_message, review_id, not_before)
          SELECT ${runId}, ${stage.index}, y.item_id, ${stage.id}, y.status, y.input_hash, y.new_output_id, coalesce(y.reused, false), ${workerId}, coalesce(y.attempts, 0), y.error_class, y.error_message, y.review_id,
            CASE WHEN y.status = 'failed_retryable' THEN ${waitAfter(sql`coalesce(y.attempts, 0)`)} END
          FROM y
          ON CONFLICT DO NOTHING
          RETURNING item_id`
        : sql`UPDATE work w SET status = y.status, input_hash = y.input_hash, output_id = y.new_output_id, reused = coalesce(y.reused, false),
        claimed_by = ${workerId},
        attempts = w.attempts + coalesce(y.attempts, 0), error_class = y.error_class, error_message = y.error_message, review_id = y.review_id,
        not_before = CASE WHEN y.status = 'failed_retryable' THEN ${waitAfter(sql`w.attempts + coalesce(y.attempts, 0)`)} END,
        updated_at = now()
      FROM y
      WHERE w.run_id = ${runId} AND w.stage_index = ${stage.index} AND w.item_id = y.item_id
      RETURNING w.item_id`
    })
    SELECT (SELECT array_agg(i.item_id) FROM ${idRows(ids)} WHERE i.item_id NOT IN (SELECT item_id FROM upd)) AS dropped,
      (SELECT array_agg(outs.item_id) FROM outs JOIN x ON x.item_id = outs.item_id WHERE outs.output_hash IS DISTINCT FROM x.o_hash) AS replaced`);
  return { dropped: row!.dropped ?? [], replaced: row!.replaced ?? [] };
}

/**
 * The items this write may record: all of them (`unguarded`), those still
 * claimed by this worker, locked first (`guarded`), or those with no row at
 * the stage yet (`insert`).
 */
function ownedItems(to: ResultsTarget, ids: readonly string[]): SQL {
  const { runId, stage, workerId } = to;
  if (to.mode === "insert") {
    // A probe per id (see `idRows`), not NOT EXISTS: with stale statistics
    // (embedded PGlite never analyzes) that became an anti join reading every
    // row of the stage for each chunk, 47,760 of them near the end of a
    // 100k-ticket run.
    return sql`SELECT i.item_id FROM ${idRows(ids)}
      LEFT JOIN LATERAL (
        SELECT true AS found FROM work
        WHERE run_id = ${runId} AND stage_index = ${stage.index} AND item_id = i.item_id
        OFFSET 0) w ON true
      WHERE w.found IS NULL`;
  }
  if (to.mode === "guarded") {
    return sql`SELECT w.item_id
      FROM ${idRows(ids)}
      CROSS JOIN LATERAL (
        SELECT item_id FROM work
        WHERE run_id = ${runId} AND stage_index = ${stage.index} AND item_id = i.item_id
          AND claimed_by = ${workerId} AND status = 'processing'
        OFFSET 0 FOR UPDATE) w`;
  }
  return sql`SELECT item_id FROM ${idRows(ids)}`;
}

/**
 * The results as one JSON payload for `jsonb_to_recordset`. Members that are
 * empty (null, false, 0) are left out: the payload is a good part of what a
 * write costs, and absent members read as NULL.
 */
function resultRows(results: readonly ResultToWrite[]): string {
  return JSON.stringify(
    results.map((r) => {
      const row: Record<string, unknown> = { item_id: r.itemId, status: r.status };
      if (r.inputHash) row.input_hash = r.inputHash;
      if (r.stored) row.output_id = r.stored.id;
      if (r.reused) row.reused = true;
      if (r.attempts.length) row.attempts = r.attempts.length;
      if (r.errorClass) row.error_class = r.errorClass;
      if (r.errorMessage) row.error_message = r.errorMessage;
      if (r.reviewId) row.review_id = r.reviewId;
      // A new output row is recorded when there is one (computed now, or answered from the request cache).
      const fresh = r.output && r.inputHash ? r.output : undefined;
      if (fresh) {
        row.o_status = fresh.status;
        row.o_value = fresh.value ?? null;
        row.o_hash = fresh.hash;
        row.o_cost = fresh.costUsd;
      }
      return row;
    }),
  );
}
