import { hostname } from "node:os";
import { sql } from "drizzle-orm";
import { ADVANCING } from "../core/status.ts";
import type { Database } from "../store/database.ts";
import type { RunContext, StagePlan } from "./context.ts";
import { anyText } from "../store/sql.ts";

/**
 * The `work` table is the durable queue. These are its operations: enqueue a
 * stage, claim a chunk, take over claims of dead workers, and count what is
 * left. Every one is idempotent or guarded, so any number of workers (or a
 * worker restarted after kill -9) can run them.
 */

/**
 * Queue `stage` for every item that reached it: all loaded items for the first
 * stage, else those that advanced past the previous one and have no row here
 * yet. Returns how many were queued.
 */
export async function enqueueStage(ctx: RunContext, stage: StagePlan, { analyzeIfNone = true } = {}): Promise<number> {
  // Where the rows are already all there (the first stage, queued as items were
  // loaded; a later stage whose rows chunks wrote), two counts say so for less
  // than the insert would cost to find nothing to insert. Rows at a stage only
  // ever exist for items that reached it, so equal counts mean none is missing.
  const reached = stage.index === 0
    ? sql`SELECT count(*) FROM run_items WHERE run_id = ${ctx.runId}`
    : sql`SELECT count(*) FROM work WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index - 1} AND status = ${anyText(ADVANCING)}`;
  const [counts] = await ctx.db.rows<{ reached: number; queued: number }>(sql`
    SELECT (${reached})::int AS reached,
      (SELECT count(*) FROM work WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index})::int AS queued`);
  let inserted = 0;
  if (counts!.reached !== counts!.queued) {
    const source =
      stage.index === 0
        ? sql`SELECT run_id, item_id FROM run_items WHERE run_id = ${ctx.runId}`
        : sql`SELECT run_id, item_id FROM work
            WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index - 1} AND status = ${anyText(ADVANCING)}`;
    const [row] = await ctx.db.rows<{ n: number }>(sql`
      WITH q AS (
        INSERT INTO work (run_id, stage_index, item_id, stage_id, status)
        SELECT s.run_id, ${stage.index}, s.item_id, ${stage.id}, 'queued' FROM (${source}) s
        ON CONFLICT DO NOTHING
        RETURNING 1)
      SELECT count(*)::int AS n FROM q`);
    inserted = row!.n;
  }
  // Fresh statistics keep the planner on the indexes as the queue grows. Only
  // the columns queries filter on: the rest (hashes, messages) steer no plan.
  // Without item_id's, a lookup of a few hundred ids is taken for most of the
  // table, and answered with a sequential scan per chunk. A later stage of a
  // segment whose chunks wrote every row (nothing queued) skips it.
  if (inserted > 0 || analyzeIfNone) await ctx.db.rows(sql`ANALYZE work (run_id, stage_index, item_id, status, claimed_by)`);
  if (stage.index === 0 && (inserted > 0 || analyzeIfNone)) await ctx.db.rows(sql`ANALYZE run_items (run_id, item_id)`);
  return inserted;
}

/**
 * Claim up to `limit` queued items of a stage for this worker. On Postgres,
 * `FOR UPDATE SKIP LOCKED` lets several processes claim from one run without
 * ever handing the same item to two of them.
 */
export async function claimChunk(ctx: RunContext, stage: StagePlan, limit: number): Promise<string[]> {
  // The candidate set is a MATERIALIZED CTE: as a subquery in FROM it could be
  // rescanned by a nested-loop join, claiming more than `limit` rows.
  const rows = await ctx.db.rows<{ item_id: string }>(sql`
    WITH c AS MATERIALIZED (
      SELECT item_id FROM work
      WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index} AND status IN ('queued', 'failed_retryable')
        AND (not_before IS NULL OR not_before <= now())
      ORDER BY item_id
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED
    )
    UPDATE work w SET status = 'processing', claimed_by = ${ctx.workerId}, updated_at = now()
    FROM c
    WHERE w.run_id = ${ctx.runId} AND w.stage_index = ${stage.index} AND w.item_id = c.item_id
    RETURNING w.item_id`);
  return rows.map((r) => r.item_id).sort();
}

/**
 * Claim up to `limit` claimable items by locking their rows, inside the open
 * transaction `ctx.db`: nothing is written, and if the process dies the locks
 * go with its connection, so no lease or takeover is needed. For stages whose
 * work is quick (no model calls), computed and written in that same transaction.
 */
export async function lockChunk(ctx: RunContext, stage: StagePlan, limit: number): Promise<string[]> {
  const rows = await ctx.db.rows<{ item_id: string }>(sql`
    SELECT item_id FROM work
    WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index} AND status IN ('queued', 'failed_retryable')
      AND (not_before IS NULL OR not_before <= now())
    ORDER BY item_id
    LIMIT ${limit}
    FOR UPDATE SKIP LOCKED`);
  return rows.map((r) => r.item_id).sort();
}

/**
 * Pick up to `limit` claimable items that this process does not already hold
 * (`held`), writing nothing: for a sole worker, whose claims live in memory.
 * Items it was working on when it died are still claimable, as they should be.
 */
export async function pickChunk(ctx: RunContext, stage: StagePlan, limit: number, held: ReadonlySet<string>): Promise<string[]> {
  const rows = await ctx.db.rows<{ item_id: string }>(sql`
    SELECT item_id FROM work
    WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index} AND status IN ('queued', 'failed_retryable')
      AND (not_before IS NULL OR not_before <= now())
      ${held.size ? sql`AND NOT (item_id = ${anyText([...held])})` : sql``}
    ORDER BY item_id
    LIMIT ${limit}`);
  return rows.map((r) => r.item_id).sort();
}

/** Claim specific items (a Trigger.dev chunk): only those still queued are returned. */
export async function claimItems(ctx: RunContext, stage: StagePlan, itemIds: string[]): Promise<string[]> {
  const rows = await ctx.db.rows<{ item_id: string }>(sql`
    UPDATE work SET status = 'processing', claimed_by = ${ctx.workerId}, updated_at = now()
    WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index}
      AND status IN ('queued', 'failed_retryable')
      AND item_id = ${anyText(itemIds)}
    RETURNING item_id`);
  return rows.map((r) => r.item_id).sort();
}

export async function heartbeat(db: Database, workerId: string, runId: string): Promise<void> {
  await db.rows(sql`
    INSERT INTO workers (id, run_id, pid, host, heartbeat_at) VALUES (${workerId}, ${runId}, ${process.pid}, ${hostname()}, now())
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), run_id = excluded.run_id`);
}

export async function retireWorker(db: Database, workerId: string): Promise<void> {
  await db.rows(sql`DELETE FROM workers WHERE id = ${workerId}`);
}

/**
 * Put back in the queue what dead workers had claimed: a claim whose worker
 * has no heartbeat within the lease. Items held by a provider batch
 * (`batch:<id>`) stay with the batch: it is polled, not resubmitted. With `everyoneElse` (embedded PGlite,
 * where no other process can be alive) every foreign claim is taken back.
 */
export async function reclaimStale(ctx: RunContext, everyoneElse = false): Promise<number> {
  const leaseSeconds = ctx.options.leaseMs / 1000;
  const rows = everyoneElse
    ? await ctx.db.rows(sql`
        UPDATE work SET status = 'queued', claimed_by = NULL
        WHERE run_id = ${ctx.runId} AND status = 'processing' AND claimed_by IS DISTINCT FROM ${ctx.workerId}
          AND claimed_by NOT LIKE 'batch:%'
        RETURNING item_id`)
    : await ctx.db.rows(sql`
        UPDATE work SET status = 'queued', claimed_by = NULL
        WHERE run_id = ${ctx.runId} AND status = 'processing' AND claimed_by IS DISTINCT FROM ${ctx.workerId}
          AND claimed_by NOT LIKE 'batch:%'
          AND claimed_by NOT IN (
            SELECT id FROM workers WHERE heartbeat_at > now() - make_interval(secs => ${leaseSeconds}))
        RETURNING item_id`);
  return rows.length;
}

export interface StageCounts {
  total: number;
  open: number;
  byStatus: Record<string, number>;
}

export async function stageCounts(ctx: RunContext, stage: StagePlan): Promise<StageCounts> {
  const rows = await ctx.db.rows<{ status: string; n: number }>(sql`
    SELECT status, count(*)::int AS n FROM work
    WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index} GROUP BY status`);
  const byStatus: Record<string, number> = {};
  let total = 0;
  let open = 0;
  for (const r of rows) {
    byStatus[r.status] = r.n;
    total += r.n;
    if (r.status === "queued" || r.status === "processing" || r.status === "failed_retryable") open += r.n;
  }
  return { total, open, byStatus };
}
