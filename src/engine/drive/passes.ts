import pLimit from "p-limit";
import { advances } from "../../core/status.ts";
import { isLlmStage } from "../../core/types.ts";
import { stageCounts } from "../../store/work.ts";
import { resumeBatches } from "../batch.ts";
import { stageRef, type RunContext, type StagePlan } from "../context.ts";
import { executeChunk, type ChunkHooks } from "../execute.ts";
import { InflightAnswers } from "../inflight.ts";
import type { ItemResult } from "../results.ts";
import { segmentBarrier } from "./barrier.ts";
import { claimer, type ClaimMode } from "./claims.ts";
import type { RunEvents } from "./events.ts";
import { chunking, CLAIM_LOOPS, claimLoops } from "./loops.ts";
import { enqueueStage, ensureTargets } from "./queue.ts";
import { advanceSegmentChunk, firstModelStage, loadSegmentChunk, usesBatchApi } from "./segments.ts";

/**
 * Passes over a run's stages: a segment's chunks through all its stages at
 * once, or one stage on its own. Each queues its items, claims them in
 * chunks (see `claims.ts`) from several loops, executes and writes them, and
 * reports progress.
 */

/** Hooks of one stage's chunks: calls in flight bounded across them, identical requests shared. */
function stageHooks(ctx: RunContext, onPersisted: (results: ItemResult[]) => void): ChunkHooks {
  const limit = pLimit(ctx.options.concurrency);
  return {
    acquire: <T,>(fn: () => Promise<T>) => limit(fn),
    inflight: new InflightAnswers(),
    halted: {},
    onPersisted,
  };
}

/**
 * Provider batches a crashed process left in flight for this stage are polled
 * and collected (never submitted again); for a stage without model calls, nothing.
 */
function batchResumer(ctx: RunContext, stage: StagePlan, onPersisted: (results: ItemResult[]) => void) {
  const llm = isLlmStage(ctx.pipeline.stages[stage.index]!);
  return () => (llm ? resumeBatches(ctx, stage, (name) => ctx.providers.get(name), onPersisted) : Promise.resolve(0));
}

/**
 * Execute a segment (see `segments.ts`): chunks are claimed at its first
 * stage and go through all its stages in memory. Items a chunk did not finish
 * (a retry waiting its turn, a chunk cut short by a crash) are picked up
 * afterwards by each later stage on its own.
 */
export async function runSegment(ctx: RunContext, segment: StagePlan[], events?: RunEvents): Promise<void> {
  if (segment.length === 1) return runStage(ctx, segment[0]!, events);
  const head = segment[0]!;
  await ensureTargets(ctx, segment);
  await enqueueStage(ctx, head);
  const sole = ctx.db.kind === "pglite";
  const headCounts = await stageCounts(ctx.db, stageRef(ctx, head));
  if (headCounts.open === 0) {
    // Nothing to claim at the first stage (a rerun whose upstream stages were
    // taken over from its base run, or a run resumed past it): the segment
    // starts at the next stage, once nobody still carries chunks from here.
    events?.stageStarted?.(head, headCounts);
    events?.progress?.(head, headCounts.total, headCounts.total);
    if (!sole) await segmentBarrier(ctx, head).drained();
    events?.stageFinished?.(head, headCounts);
    return runSegment(ctx, segment.slice(1), events);
  }
  // Progress per stage: a later stage's total is what has reached it so far,
  // and it may get at most what it has plus what the first stage still holds,
  // less what stopped on the way (gated out, failed, sent to review).
  const progress = await Promise.all(
    segment.map(async (stage, i) => {
      const counts = i === 0 ? headCounts : await stageCounts(ctx.db, stageRef(ctx, stage));
      events?.stageStarted?.(stage, counts);
      const p = { done: counts.total - counts.open, total: counts.total, atMost: i === 0 ? undefined : counts.total + headCounts.open };
      events?.progress?.(stage, p.done, p.total, p.atMost);
      return p;
    }),
  );
  const hooks = segment.map((stage, i) =>
    stageHooks(ctx, (results) => {
      const p = progress[i]!;
      p.done += results.length;
      const passed = results.filter((r) => advances(r.status)).length;
      const after = progress[i + 1];
      if (after) after.total += passed;
      for (const later of progress.slice(i + 1)) later.atMost = Math.max(later.total, later.atMost! - (results.length - passed));
      events?.progress?.(stage, p.done, Math.max(p.total, p.done), p.atMost === undefined ? undefined : Math.max(p.atMost, p.done));
    }),
  );
  const modelAt = firstModelStage(ctx, segment);
  const { loops, chunk } = chunking(ctx, headCounts.open);
  // Postgres, a first stage without model calls: the chunk is claimed by row
  // locks, and the stages up to the first model call are computed and written
  // in that transaction, which ends before any call is made.
  const mode: ClaimMode = sole ? "memory" : modelAt > 0 ? "lock" : "lease";
  const claim = claimer(ctx, head, chunk, mode);
  // `run`: the context chunks are executed in; on Postgres, its signal also
  // aborts when this process loses its place in the segment's barrier.
  const claimAndExecute = (run: RunContext) =>
    claim(run, async (c, ids) => {
      const carried = await loadSegmentChunk(c, segment, ids);
      if (mode !== "lock") return advanceSegmentChunk(c, segment, carried, hooks);
      await advanceSegmentChunk(c, segment, carried, hooks, modelAt);
      return () => advanceSegmentChunk(run, segment, carried, hooks);
    });
  const resume = batchResumer(ctx, head, hooks[0]!.onPersisted!);
  const chunks = async (run: RunContext) => {
    await resume();
    await claimLoops(run, head, loops, () => claimAndExecute(run), resume);
  };
  if (sole) {
    await chunks(ctx);
  } else {
    // Other processes sharing the run may still be carrying chunks through
    // the later stages: they are waited for before those stages queue anything.
    const barrier = segmentBarrier(ctx, head);
    await barrier.within((signal) => chunks({ ...ctx, signal }));
    await barrier.drained();
  }
  const end = await stageCounts(ctx.db, stageRef(ctx, head));
  events?.progress?.(head, end.total, end.total);
  events?.stageFinished?.(head, end);
  // What the chunks left: each later stage on its own, in order.
  for (const stage of segment.slice(1)) await runStage(ctx, stage, events, { announced: true });
}

/** Execute one stage on its own. `announced`: its start was already reported (a later stage of a segment). */
export async function runStage(ctx: RunContext, stage: StagePlan, events?: RunEvents, { announced = false } = {}): Promise<void> {
  await ensureTargets(ctx, [stage]);
  await enqueueStage(ctx, stage, { analyzeIfNone: !announced });
  const start = await stageCounts(ctx.db, stageRef(ctx, stage));
  if (!announced) events?.stageStarted?.(stage, start);
  let done = start.total - start.open;
  events?.progress?.(stage, done, start.total);
  // Nothing open (the usual case for a later stage of a segment): no loops.
  if (start.open > 0) {
    const hooks = stageHooks(ctx, (results) => {
      done += results.length;
      events?.progress?.(stage, done, start.total);
    });
    const llm = isLlmStage(ctx.pipeline.stages[stage.index]!);
    const sole = ctx.db.kind === "pglite";
    const batch = usesBatchApi(ctx, stage);
    const { loops, chunk } = batch ? { loops: CLAIM_LOOPS, chunk: ctx.options.batchChunkSize } : chunking(ctx, start.open);
    // Work without model calls is quick: claimed, computed and written in one
    // transaction. Model calls are slow and paid for: claimed under a lease
    // (in memory, for a sole worker) and written as they come.
    // A batch stage's chunks are claimed one at a time, so each goes out whole as one provider batch.
    const claim = claimer(ctx, stage, chunk, !llm ? "lock" : sole ? "memory" : "lease", { exclusive: batch });
    const resume = batchResumer(ctx, stage, hooks.onPersisted!);
    await resume();
    await claimLoops(ctx, stage, loops, () => claim(ctx, async (c, ids) => void (await executeChunk(c, stage, ids, hooks))), resume);
  }
  const end = await stageCounts(ctx.db, stageRef(ctx, stage));
  events?.progress?.(stage, end.total, end.total);
  events?.stageFinished?.(stage, end);
}
