import { sql, type SQL } from "drizzle-orm";
import type { TargetColumn } from "../core/target.ts";
import type { CacheEntry } from "./cache.ts";
import type { Database } from "./database.ts";
import { anyText, idRows } from "./sql.ts";
import { ledgerOf, upsertTarget, writeTarget, type TargetRow } from "./targets.ts";

/**
 * Writing a stage's results: new outputs, attempts, request-cache entries,
 * commit-target rows and the work rows themselves, in one statement (one
 * round trip, atomic without a transaction of its own).
 */

/** One provider request as `attempts` records it. */
export interface AttemptRow {
  attempt: number;
  provider: string;
  model: string;
  mode: "realtime" | "batch";
  requestHash: string;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  costUsd: number;
  /** The same usage at the realtime list price (equal to costUsd for realtime calls). */
  listCostUsd: number;
  latencyMs: number;
  errorClass?: string;
  errorMessage?: string;
}

/** One item's result at a stage, as it is written. */
export interface ResultToWrite {
  itemId: string;
  status: string;
  inputHash?: string;
  reused: boolean;
  /** A new output row to record. */
  output?: { value: unknown; status: string; costUsd: number; hash: string };
  /** The existing output row the result points at (a reuse hit). */
  stored?: { id: number };
  errorClass?: string;
  errorMessage?: string;
  attempts: readonly AttemptRow[];
  cache?: CacheEntry;
  targetRow?: TargetRow;
  /** The review decision that settled this result (see `reviews.ts`). */
  reviewId?: number;
}

/**
 * How the work rows are written:
 * - `guarded`: rows claimed under a lease; only those this worker still holds
 *   are written, locked first. A worker whose lease was taken over writes
 *   nothing at all for those items (no outputs, attempts or target rows).
 * - `unguarded`: rows nobody else can be working on (locked by the caller's
 *   transaction, or a sole worker's).
 * - `insert`: the rows do not exist yet (a later stage of a segment): they
 *   are inserted with their results, and an item that already has a row at
 *   this stage is left alone, results and all.
 */
export type WriteMode = "guarded" | "unguarded" | "insert";

export interface ResultsTarget {
  pipeline: string;
  runId: string;
  stage: { index: number; id: string; version: string };
  /** Who writes: the claim checked in `guarded` mode, and recorded on every row written. */
  workerId: string;
  mode: WriteMode;
  /** The commit stage's target table, when this stage is one. */
  targetTable?: string;
  /** Its typed columns, when it declares them. */
  targetColumns?: readonly TargetColumn[];
  /**
   * The target's database, when it is not the store (`target.url`): the rows
   * are written there first, in a statement of their own with their ledger
   * rows, then the work rows here (see `target-databases.ts`).
   */
  targetDb?: Database;
  /**
   * Seconds an item to retry waits, by attempts spent so far (index 0: none).
   * The engine's backoff policy computes them; the last applies beyond.
   */
  retryDelays: readonly number[];
}

export interface WriteOutcome {
  /** Items whose work row this write did not record (a lost claim, a row that already existed). */
  dropped: string[];
  /** Items whose new output met one already stored under the same key with a different value (another run got there first): their work row points at that one. */
  replaced: string[];
}

export async function writeResults(db: Database, to: ResultsTarget, results: readonly ResultToWrite[]): Promise<WriteOutcome> {
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
      return writeResults(tx, { ...to, targetTable: undefined, targetDb: undefined }, results);
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
    -- In hash order: two statements inserting some of the same hashes wait for
    -- each other in one order, never each for the other (a deadlock).
    cache AS (
      INSERT INTO request_cache (request_hash, provider, model, response)
      SELECT c."requestHash", c.provider, c.model, c.response
      FROM jsonb_to_recordset(${JSON.stringify(cache)}::jsonb) AS c(item_id text, "requestHash" text, provider text, model text, response jsonb)
      ORDER BY c."requestHash"
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
    -- The new output's id by item: a hash join, since the probes above
    -- keep the planner's estimates near the chunk's size.
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
      -- The ids as an index condition: on stale statistics PGlite's planner
      -- otherwise hashed every row of the stage to join the chunk's 250.
      WHERE w.run_id = ${runId} AND w.stage_index = ${stage.index} AND w.item_id = ${anyText(ids)} AND w.item_id = y.item_id
      RETURNING w.item_id`
    })
    -- Outputs met already stored with another value: a hashed NOT IN, not a join,
    -- whatever the planner estimates (a join estimated at one row was a
    -- nested loop comparing every output with every result).
    SELECT (SELECT array_agg(i.item_id) FROM ${idRows(ids)} WHERE i.item_id NOT IN (SELECT item_id FROM upd)) AS dropped,
      (SELECT array_agg(outs.item_id) FROM outs WHERE (outs.item_id, outs.output_hash) NOT IN (SELECT x.item_id, x.o_hash FROM x WHERE x.o_status IS NOT NULL)) AS replaced`);
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
    // A primary-key probe per id (see `idRows`): the OFFSET 0 keeps NOT
    // EXISTS a filter, never an anti join, which with stale statistics
    // (embedded PGlite never analyzes) read every row of the stage for each
    // chunk, 47,760 of them near the end of a 100k-ticket run. As a filter,
    // the planner takes it to keep half the ids; the LEFT JOIN probe it
    // replaces was estimated at one row, which turned every join after it
    // into a nested loop over the chunk's rows (62,500 comparisons a chunk).
    return sql`SELECT i.item_id FROM ${idRows(ids)}
      WHERE NOT EXISTS (
        SELECT FROM work
        WHERE run_id = ${runId} AND stage_index = ${stage.index} AND item_id = i.item_id
        OFFSET 0)`;
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
