import { AbortTaskRunError } from "@trigger.dev/sdk";
import { BudgetExhaustedError, SluiceError } from "../../core/errors.ts";
import type { PipelineDef } from "../../core/types.ts";
import { isLlmStage } from "../../core/types.ts";
// The same lease machinery the local runner uses, so a chunk run that dies
// holding claims is taken over exactly as a crashed local worker would be.
import { claimableInRange, executeStageChunk, heartbeat, newWorkerId, openRun, reclaimStale, resumeBatches, retireWorker, stopAtBudget, type RunContext } from "../../engine/index.ts";
import { triggerRuntime, type TriggerRuntime } from "./runtime.ts";

/**
 * The payload of a stage-task run: references only. The items are named by a
 * range of ids in the store, never carried, so a payload stays a few hundred
 * bytes whatever the chunk size (Trigger.dev offloads payloads from 128 KB).
 */
export interface ChunkPayload {
  runId: string;
  pipelineId: string;
  stageIndex: number;
  stageId: string;
  /** 0 for the first dispatch of a stage; n for the n-th sweep over items left open. */
  round: number;
  chunk: number;
  first: string;
  last: string;
}

export interface ChunkOutput {
  stageId: string;
  round: number;
  chunk: number;
  /** Items of the range still queued when this run looked. */
  queued: number;
  /** Items this run claimed and wrote (0 when an earlier attempt or another run did them). */
  executed: number;
  /** Provider batches of dead runs of this stage that this run polled and collected. */
  resumedBatches: number;
  byStatus: Record<string, number>;
  /** Set when the run reached a budget during this chunk: the run is `budget_exhausted`, and this is not retried. */
  budgetExhausted?: string;
}

export interface ChunkRunOptions {
  signal?: AbortSignal;
  /** Trigger.dev attempt number; from the second on, claims of dead attempts are taken back first. */
  attempt?: number;
}

/**
 * Execute one chunk of one stage through the engine: the body of every stage
 * task. Only items still queued are claimed, so a retried attempt, a duplicate
 * delivery or an overlapping sweep computes nothing twice.
 *
 * Retries are split by owner. The engine retries each item (transient provider
 * errors with backoff, quality repair) and records the outcome as the item's
 * status; none of that surfaces here as an exception. What does throw is
 * infrastructure (database unreachable, worker killed), and that is what the
 * task-level retry is for.
 *
 * @example
 * await runStageChunk(pipeline, { runId, pipelineId: "mini", stageIndex: 1, stageId: "classify", round: 0, chunk: 0, first: "a", last: "k" });
 */
export async function runStageChunk(pipeline: PipelineDef, payload: ChunkPayload, options: ChunkRunOptions = {}): Promise<ChunkOutput> {
  const def = pipeline.stages[payload.stageIndex];
  if (payload.pipelineId !== pipeline.id || def?.id !== payload.stageId) {
    // A payload from another deploy of the pipeline: retrying cannot fix it.
    throw new AbortTaskRunError(`stage ${payload.pipelineId}/${payload.stageId} (#${payload.stageIndex}) is not stage #${payload.stageIndex} of the deployed pipeline ${pipeline.id}`);
  }
  const rt = await triggerRuntime();
  const ctx = await open(pipeline, payload.runId, rt, options.signal);
  await heartbeat(ctx.db, ctx.workerId, ctx.runId);
  const beat = setInterval(() => void heartbeat(ctx.db, ctx.workerId, ctx.runId).catch(() => {}), Math.max(250, ctx.options.leaseMs / 3));
  try {
    if ((options.attempt ?? 1) > 1) await reclaimStale(ctx);
    // A provider batch whose run died is polled and collected, never submitted again.
    const resumedBatches = isLlmStage(def) ? await resumeBatches(ctx, payload.stageIndex) : 0;
    const ids = await claimableInRange(ctx, payload.stageIndex, payload.first, payload.last);
    let results: Awaited<ReturnType<typeof executeStageChunk>> = [];
    try {
      if (ids.length) results = await executeStageChunk(ctx, payload.stageIndex, ids);
    } catch (err) {
      // A budget reached is not a failure to retry: the run stops, its items queued for a larger budget.
      if (!(err instanceof BudgetExhaustedError)) throw err;
      await stopAtBudget(ctx, err);
      return { stageId: payload.stageId, round: payload.round, chunk: payload.chunk, queued: ids.length, executed: 0, resumedBatches, byStatus: {}, budgetExhausted: err.message };
    }
    const byStatus: Record<string, number> = {};
    for (const r of results) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
    ctx.logger.info(`stage ${payload.stageId} chunk ${payload.chunk}${payload.round ? ` (sweep ${payload.round})` : ""}: ${results.length} of ${ids.length} queued item(s) written`, { byStatus, resumedBatches });
    return { stageId: payload.stageId, round: payload.round, chunk: payload.chunk, queued: ids.length, executed: results.length, resumedBatches, byStatus };
  } finally {
    clearInterval(beat);
    // Retiring makes whatever this run still holds reclaimable at once, not after the lease.
    await retireWorker(ctx.db, ctx.workerId).catch(() => {});
  }
}

async function open(pipeline: PipelineDef, runId: string, rt: TriggerRuntime, signal?: AbortSignal): Promise<RunContext> {
  try {
    const { ctx } = await openRun({ db: rt.db, pipeline, providers: rt.providers, runId, workerId: newWorkerId("trg"), options: rt.engine, logger: rt.logger, signal });
    return ctx;
  } catch (err) {
    // No such run, or its stage versions differ from this deploy's: not transient.
    if (err instanceof SluiceError) throw new AbortTaskRunError(err.message);
    throw err;
  }
}
