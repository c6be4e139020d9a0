import { sql } from "drizzle-orm";
import type { RunContext } from "../../engine/index.ts";
import type { Database } from "../../store/index.ts";

/**
 * How the Trigger.dev runner names a slice of a stage without carrying it: a
 * range of item ids in the store's own ordering. A payload stays a few hundred
 * bytes whatever the chunk size, and the stage task reads the ids back.
 */
export interface ChunkRange {
  /** Position of the chunk in this round's ordering; part of its idempotency key. */
  chunk: number;
  first: string;
  last: string;
  /** Items in the range when it was planned (for reports; the task re-reads the range). */
  size: number;
}

/**
 * Cut a stage's items into ranges of `size`. Round 0 covers every item the
 * stage has, whatever its status, so a retried orchestrator cuts exactly the
 * same chunks (and hits the same idempotency keys) however far the first
 * attempt got. Later rounds cover only items still open.
 */
export async function chunkRanges(ctx: RunContext, stageIndex: number, size: number, openOnly: boolean): Promise<ChunkRange[]> {
  const open = openOnly ? sql`AND status IN ('queued', 'processing', 'failed_retryable')` : sql``;
  const rows = await ctx.db.rows<{ chunk: number; first: string; last: string; size: number }>(sql`
    SELECT ((rn - 1) / ${size})::int AS chunk, min(item_id) AS first, max(item_id) AS last, count(*)::int AS size
    FROM (
      SELECT item_id, row_number() OVER (ORDER BY item_id) AS rn FROM work
      WHERE run_id = ${ctx.runId} AND stage_index = ${stageIndex} ${open}
    ) t
    GROUP BY 1 ORDER BY 1`);
  return rows.map((r) => ({ chunk: Number(r.chunk), first: r.first, last: r.last, size: Number(r.size) }));
}

/** The ids of a range that are still waiting to be claimed. */
export async function queuedIdsInRange(ctx: RunContext, stageIndex: number, first: string, last: string): Promise<string[]> {
  const rows = await ctx.db.rows<{ item_id: string }>(sql`
    SELECT item_id FROM work
    WHERE run_id = ${ctx.runId} AND stage_index = ${stageIndex}
      AND item_id >= ${first} AND item_id <= ${last}
      AND status IN ('queued', 'failed_retryable')
    ORDER BY item_id`);
  return rows.map((r) => r.item_id);
}

/** Items of a stage claimed by a run that has not written them back yet. */
export async function processingCount(ctx: RunContext, stageIndex: number): Promise<number> {
  const rows = await ctx.db.rows<{ n: number }>(sql`
    SELECT count(*)::int AS n FROM work WHERE run_id = ${ctx.runId} AND stage_index = ${stageIndex} AND status = 'processing'`);
  return Number(rows[0]?.n ?? 0);
}

/**
 * The sluice run an orchestrator run already started, if any. A retried
 * orchestrator attempt has the same Trigger.dev run id, so it continues the
 * run (and dispatches the same chunks) instead of starting another.
 */
export async function runStartedBy(db: Database, pipelineId: string, triggerRunId: string): Promise<string | undefined> {
  const rows = await db.rows<{ id: string }>(sql`
    SELECT id FROM runs WHERE pipeline = ${pipelineId} AND options->>'triggerRunId' = ${triggerRunId}
    ORDER BY created_at LIMIT 1`);
  return rows[0]?.id;
}
