import { columnsOf } from "../core/target.ts";
import type { CommitStage } from "../core/types.ts";
import { targetDatabase } from "../store/target-databases.ts";
import { writeResults, type WriteMode, type WriteOutcome } from "../store/results.ts";
import type { RunContext, StagePlan } from "./context.ts";
import type { ItemResult } from "./results.ts";
import { retryDelaysSeconds } from "./retry.ts";
import { applyDecisions, applyEdits } from "./review.ts";

/**
 * Write a group of results (see `src/store/results.ts` for the statement).
 * How the work rows are claimed decides how they are written: under a lease,
 * only items this worker still holds are written; a chunk claimed by row
 * locks, or by a sole worker, needs no check; a later stage of a segment
 * inserts its rows with its results. `claimed_by` stays on the finished row
 * as the record of which worker computed it.
 */
export async function persistResults(ctx: RunContext, stage: StagePlan, all: ItemResult[], { insert = false } = {}): Promise<WriteOutcome> {
  if (all.length === 0) return { dropped: [], replaced: [] };
  const mode: WriteMode = insert ? "insert" : ctx.lockedClaim || ctx.soleWorker ? "unguarded" : "guarded";
  const def = ctx.pipeline.stages[stage.index]!;
  // What a person decided about items sent to review, and the edits they made, go with the results.
  await applyDecisions(ctx, stage, all);
  if (def.kind === "commit") await applyEdits(ctx, stage, all);
  const target = def.kind === "commit" ? (def as CommitStage).target : undefined;
  const outcome = await writeResults(
    ctx.db,
    {
      pipeline: ctx.pipeline.id,
      runId: ctx.runId,
      stage,
      workerId: ctx.workerId,
      mode,
      targetTable: target?.table,
      targetColumns: target ? columnsOf(target) : undefined,
      targetDb: target?.url !== undefined ? await targetDatabase(ctx.db, target.url) : undefined,
      retryDelays: retryDelaysSeconds(ctx.options),
    },
    all,
  );
  if (outcome.dropped.length) {
    ctx.logger.warn(
      insert
        ? `stage ${stage.id}: ${outcome.dropped.length} result(s) dropped: another worker had already recorded those items at this stage`
        : `stage ${stage.id}: ${outcome.dropped.length} result(s) dropped: their claim was taken over by another worker`,
    );
  }
  return outcome;
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
