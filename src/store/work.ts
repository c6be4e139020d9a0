import { sql } from "drizzle-orm";
import { ADVANCING } from "../core/status.ts";
import type { Database } from "./database.ts";
import { reopenRun } from "./runs.ts";
import { anyInt, anyText } from "./sql.ts";

/**
 * `work`: the durable queue, one row per (run, stage, item), and each item's
 * status at each stage. These are its operations: queue a stage, claim a
 * chunk, take over claims of dead workers, count what is left. Every one is
 * idempotent or guarded, so any number of workers (or a worker restarted
 * after kill -9) can run them. Results are written by `results.ts`.
 */

/** A stage of a run. */
export interface StageRef {
  runId: string;
  stageIndex: number;
}

/** Statuses of an item that some worker still has to take up, or is working on. */
export const OPEN_STATUSES = ["queued", "processing", "failed_retryable"] as const;

/**
 * Where a stage's items come from: the stages it depends on (`deps`) and of
 * those its frontier (see `core/dag.ts`). A stage with an empty frontier (the
 * first) is reached by every loaded item; one with a single frontier stage
 * (a list of stages: the one before it) by the items that advanced there;
 * one where branches meet by the items that advanced at one of them at least,
 * once none of its dependencies still has them open.
 */
export interface StageRoute {
  deps: readonly number[];
  frontier: readonly number[];
}

function reachedItems(at: StageRef, route: StageRoute) {
  if (route.frontier.length === 0) return sql`SELECT run_id, item_id FROM run_items WHERE run_id = ${at.runId}`;
  if (route.frontier.length === 1) {
    return sql`SELECT run_id, item_id FROM work
      WHERE run_id = ${at.runId} AND stage_index = ${route.frontier[0]!} AND status = ${anyText(ADVANCING)}`;
  }
  return sql`SELECT DISTINCT w.run_id, w.item_id FROM work w
    WHERE w.run_id = ${at.runId} AND w.stage_index = ${anyInt(route.frontier)} AND w.status = ${anyText(ADVANCING)}
      AND NOT EXISTS (SELECT 1 FROM work o WHERE o.run_id = w.run_id AND o.item_id = w.item_id
        AND o.stage_index = ${anyInt(route.deps)} AND o.status = ${anyText(OPEN_STATUSES)})`;
}

/**
 * How many items reached a stage (see `StageRoute`) and how many rows it has.
 * Rows at a stage only ever exist for items that reached it, so equal counts
 * mean none is missing.
 */
export async function reachedAndQueued(db: Database, at: StageRef, route: StageRoute): Promise<{ reached: number; queued: number }> {
  const reached =
    route.frontier.length === 0
      ? sql`SELECT count(*) FROM run_items WHERE run_id = ${at.runId}`
      : route.frontier.length === 1
        ? sql`SELECT count(*) FROM work WHERE run_id = ${at.runId} AND stage_index = ${route.frontier[0]!} AND status = ${anyText(ADVANCING)}`
        : sql`SELECT count(*) FROM (${reachedItems(at, route)}) r`;
  const [counts] = await db.rows<{ reached: number; queued: number }>(sql`
    SELECT (${reached})::int AS reached,
      (SELECT count(*) FROM work WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex})::int AS queued`);
  return counts!;
}

/** Queue a stage for the items that reached it (see `StageRoute`) and have no row there yet. Returns how many were queued. */
export async function insertQueued(db: Database, at: StageRef, stageId: string, route: StageRoute): Promise<number> {
  const [row] = await db.rows<{ n: number }>(sql`
    WITH q AS (
      INSERT INTO work (run_id, stage_index, item_id, stage_id, status)
      SELECT s.run_id, ${at.stageIndex}, s.item_id, ${stageId}, 'queued' FROM (${reachedItems(at, route)}) s
      ON CONFLICT DO NOTHING
      RETURNING 1)
    SELECT count(*)::int AS n FROM q`);
  return row!.n;
}

/**
 * Fresh statistics keep the planner on the indexes as the queue grows. Only
 * the columns queries filter on: the rest (hashes, messages) steer no plan.
 * Without item_id's, a lookup of a few hundred ids is taken for most of the
 * table, and answered with a sequential scan per chunk.
 */
export async function analyzeQueue(db: Database, { items = false } = {}): Promise<void> {
  await db.rows(sql`ANALYZE work (run_id, stage_index, item_id, status, claimed_by)`);
  if (items) await db.rows(sql`ANALYZE run_items (run_id, item_id)`);
}

/**
 * Claim up to `limit` claimable items of a stage for `workerId` (a lease: the
 * claim is written). On Postgres, `FOR UPDATE SKIP LOCKED` lets several
 * processes claim from one run without ever handing the same item to two.
 */
export async function claimChunk(db: Database, at: StageRef, workerId: string, limit: number, { exclusive = false } = {}): Promise<string[]> {
  if (exclusive) {
    // One claimer of the stage at a time, in every process: concurrent claims
    // would each skip the rows the others hold and split the stage between
    // them (a batch stage would send several small provider batches).
    return db.transaction(async (tx) => {
      await tx.rows(sql`SELECT pg_advisory_xact_lock(hashtext(${`sluice:claim:${at.runId}:${at.stageIndex}`}))`);
      return claimChunk(tx, at, workerId, limit);
    });
  }
  // The candidate set is a MATERIALIZED CTE: as a subquery in FROM it could be
  // rescanned by a nested-loop join, claiming more than `limit` rows.
  const rows = await db.rows<{ item_id: string }>(sql`
    WITH c AS MATERIALIZED (
      SELECT item_id FROM work
      WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex} AND status IN ('queued', 'failed_retryable')
        AND (not_before IS NULL OR not_before <= now())
      ORDER BY item_id
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED
    )
    UPDATE work w SET status = 'processing', claimed_by = ${workerId}, updated_at = now()
    FROM c
    WHERE w.run_id = ${at.runId} AND w.stage_index = ${at.stageIndex} AND w.item_id = c.item_id
    RETURNING w.item_id`);
  return rows.map((r) => r.item_id).sort();
}

/**
 * Claim up to `limit` claimable items by locking their rows, inside the open
 * transaction `tx`: nothing is written, and if the process dies the locks go
 * with its connection, so no lease or takeover is needed.
 */
export async function lockChunk(tx: Database, at: StageRef, limit: number): Promise<string[]> {
  const rows = await tx.rows<{ item_id: string }>(sql`
    SELECT item_id FROM work
    WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex} AND status IN ('queued', 'failed_retryable')
      AND (not_before IS NULL OR not_before <= now())
    ORDER BY item_id
    LIMIT ${limit}
    FOR UPDATE SKIP LOCKED`);
  return rows.map((r) => r.item_id).sort();
}

/**
 * Locks held by a process whose host vanished (no kill, no closed socket) are
 * released when the server gives up on its transaction: call first thing in
 * a transaction that holds row locks as claims.
 */
export async function limitIdleInTransaction(tx: Database): Promise<void> {
  await tx.rows(sql`SET LOCAL idle_in_transaction_session_timeout = '5min'`);
}

/**
 * Up to `limit` claimable items that the caller does not already hold
 * (`held`), writing nothing: for a sole worker, whose claims live in memory.
 * Items it was working on when it died are still claimable, as they should be.
 */
export async function pickChunk(db: Database, at: StageRef, limit: number, held: ReadonlySet<string>): Promise<string[]> {
  const rows = await db.rows<{ item_id: string }>(sql`
    SELECT item_id FROM work
    WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex} AND status IN ('queued', 'failed_retryable')
      AND (not_before IS NULL OR not_before <= now())
      ${held.size ? sql`AND NOT (item_id = ${anyText([...held])})` : sql``}
    ORDER BY item_id
    LIMIT ${limit}`);
  return rows.map((r) => r.item_id).sort();
}

/** Claim specific items (a Trigger.dev chunk) for `workerId`: only those still claimable are returned. */
export async function claimItems(db: Database, at: StageRef, workerId: string, itemIds: readonly string[]): Promise<string[]> {
  const rows = await db.rows<{ item_id: string }>(sql`
    UPDATE work SET status = 'processing', claimed_by = ${workerId}, updated_at = now()
    WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex}
      AND status IN ('queued', 'failed_retryable')
      AND item_id = ${anyText(itemIds)}
    RETURNING item_id`);
  return rows.map((r) => r.item_id).sort();
}

/**
 * Put back in the queue what dead workers had claimed: a claim whose worker
 * has no heartbeat within the lease. Items held by a provider batch
 * (`batch:<id>`) stay with the batch: it is polled, not resubmitted. With
 * `everyoneElse` (embedded PGlite, where no other process can be alive)
 * every claim not `workerId`'s is taken back.
 */
export async function reclaimStale(db: Database, runId: string, workerId: string, leaseMs: number, everyoneElse = false): Promise<number> {
  const rows = everyoneElse
    ? await db.rows(sql`
        UPDATE work SET status = 'queued', claimed_by = NULL
        WHERE run_id = ${runId} AND status = 'processing' AND claimed_by IS DISTINCT FROM ${workerId}
          AND claimed_by NOT LIKE 'batch:%'
        RETURNING item_id`)
    : await db.rows(sql`
        UPDATE work SET status = 'queued', claimed_by = NULL
        WHERE run_id = ${runId} AND status = 'processing' AND claimed_by IS DISTINCT FROM ${workerId}
          AND claimed_by NOT LIKE 'batch:%'
          AND claimed_by NOT IN (
            SELECT id FROM workers WHERE heartbeat_at > now() - make_interval(secs => ${leaseMs / 1000}))
        RETURNING item_id`);
  return rows.length;
}

export interface StageCounts {
  total: number;
  open: number;
  byStatus: Record<string, number>;
}

export async function stageCounts(db: Database, at: StageRef): Promise<StageCounts> {
  const rows = await db.rows<{ status: string; n: number }>(sql`
    SELECT status, count(*)::int AS n FROM work
    WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex} GROUP BY status`);
  const byStatus: Record<string, number> = {};
  let total = 0;
  let open = 0;
  for (const r of rows) {
    byStatus[r.status] = r.n;
    total += r.n;
    if ((OPEN_STATUSES as readonly string[]).includes(r.status)) open += r.n;
  }
  return { total, open, byStatus };
}

/** Ids of a stage's items waiting to be claimed, in order; with `range`, only those between its ends. */
export async function claimableIds(db: Database, at: StageRef, range?: { first: string; last: string }): Promise<string[]> {
  const rows = await db.rows<{ item_id: string }>(sql`
    SELECT item_id FROM work
    WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex}
      ${range ? sql`AND item_id >= ${range.first} AND item_id <= ${range.last}` : sql``}
      AND status IN ('queued', 'failed_retryable')
    ORDER BY item_id`);
  return rows.map((r) => r.item_id);
}

/**
 * A stage's items cut into ranges of `size` in the store's ordering of ids,
 * with the first and last id of each and how many of its items are still
 * open: all items, or with `openOnly` those not finished yet.
 */
export async function idRanges(db: Database, at: StageRef, size: number, openOnly: boolean): Promise<{ chunk: number; first: string; last: string; size: number; open: number }[]> {
  const open = openOnly ? sql`AND status IN ('queued', 'processing', 'failed_retryable')` : sql``;
  const rows = await db.rows<{ chunk: number; first: string; last: string; size: number; open: number }>(sql`
    SELECT ((rn - 1) / ${size})::int AS chunk, min(item_id) AS first, max(item_id) AS last, count(*)::int AS size,
      (count(*) FILTER (WHERE status IN ('queued', 'processing', 'failed_retryable')))::int AS open
    FROM (
      SELECT item_id, status, row_number() OVER (ORDER BY item_id) AS rn FROM work
      WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex} ${open}
    ) t
    GROUP BY 1 ORDER BY 1`);
  return rows.map((r) => ({ chunk: Number(r.chunk), first: r.first, last: r.last, size: Number(r.size), open: Number(r.open) }));
}

/** Attempts each item has spent at a stage so far. */
export async function attemptsSpent(db: Database, at: StageRef, itemIds: readonly string[]): Promise<Map<string, number>> {
  const rows = await db.rows<{ item_id: string; attempts: number }>(sql`
    SELECT item_id, attempts FROM work WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex} AND item_id = ${anyText(itemIds)}`);
  return new Map(rows.map((r) => [r.item_id, r.attempts]));
}

/**
 * Hand items over to a new claimant (a provider batch, `batch:<id>`): from
 * `from`, or from whoever holds them when `from` is undefined (a sole worker).
 */
export async function handOver(db: Database, at: StageRef, itemIds: readonly string[], to: string, from: string | undefined): Promise<void> {
  await db.rows(sql`
    UPDATE work SET claimed_by = ${to}, status = 'processing', updated_at = now()
    WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex}
      AND ${from === undefined ? sql`TRUE` : sql`claimed_by = ${from}`}
      AND item_id = ${anyText(itemIds)}`);
}

/**
 * Give back everything a worker still holds of a run (it stopped at a budget):
 * its claimed items go back to the queue and its request claims are freed,
 * at once rather than after its lease.
 */
export async function releaseClaims(db: Database, runId: string, workerId: string): Promise<number> {
  const rows = await db.rows(sql`
    UPDATE work SET status = 'queued', claimed_by = NULL, updated_at = now()
    WHERE run_id = ${runId} AND status = 'processing' AND claimed_by = ${workerId}
    RETURNING item_id`);
  await db.rows(sql`
    DELETE FROM request_claims WHERE request_hash IN (
      SELECT request_hash FROM request_claims WHERE worker_id = ${workerId} ORDER BY request_hash FOR UPDATE)`);
  return rows.length;
}

/** Of these items, those `claimant` still holds and has not written back. */
export async function stillHeldBy(db: Database, at: StageRef, claimant: string, itemIds: readonly string[]): Promise<Set<string>> {
  if (itemIds.length === 0) return new Set();
  const rows = await db.rows<{ item_id: string }>(sql`
    SELECT item_id FROM work
    WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex} AND claimed_by = ${claimant}
      AND status = 'processing' AND item_id = ${anyText(itemIds)}`);
  return new Set(rows.map((r) => r.item_id));
}

/**
 * Take over a base run's finished results for the stages `stages` (indexes)
 * into a new run (a rerun whose upstream stages are the base run's), marked
 * reused and with no attempts of their own.
 */
export async function copyFinishedWork(tx: Database, fromRunId: string, toRunId: string, stages: readonly number[]): Promise<void> {
  if (stages.length === 0) return;
  await tx.rows(sql`
    INSERT INTO work (run_id, stage_index, item_id, stage_id, status, input_hash, output_id, reused, attempts, error_class, error_message)
    SELECT ${toRunId}, stage_index, item_id, stage_id, status, input_hash, output_id, true, 0, error_class, error_message
    FROM work WHERE run_id = ${fromRunId} AND stage_index = ${anyInt(stages)}
      AND status NOT IN ('queued', 'processing', 'failed_retryable')`);
}

/**
 * Put a run's dead letters back in the queue with a fresh attempt budget and
 * mark the run running again, so `resume` retries exactly those items.
 */
export async function requeueDeadLetters(db: Database, runId: string): Promise<number> {
  return db.transaction(async (tx) => {
    const rows = await tx.rows(sql`
      UPDATE work SET status = 'queued', attempts = 0, error_class = NULL, error_message = NULL, claimed_by = NULL, updated_at = now()
      WHERE run_id = ${runId} AND status = 'failed_terminal' RETURNING item_id`);
    if (rows.length) await reopenRun(tx, runId);
    return rows.length;
  });
}
