import { AbortTaskRunError } from "@trigger.dev/sdk";
import { BudgetExhaustedError, SluiceError } from "../../core/errors.ts";
import type { PipelineDef } from "../../core/types.ts";
import { isLlmStage } from "../../core/types.ts";
// The same lease machinery the local runner uses, so a chunk run that dies
// holding claims is taken over exactly as a crashed local worker would be.
import {
  claimableInRange, collectBatches, executeStageChunk, heartbeat, newWorkerId, openRun, reclaimStale, resumeBatches, retireWorker, sleep, stopAtBudget, type ItemResult, type RunContext,
} from "../../engine/index.ts";
import { isBatchable } from "./plan.ts";
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
  /** Provider batches this invocation collected but did not submit: a dead run's, or this run's own from before a wait. */
  resumedBatches: number;
  byStatus: Record<string, number>;
  /** Batch-mode chunks: how often the run waited (suspended, on Trigger.dev) for its provider batches. */
  waits?: number;
  /** Set when the run reached a budget during this chunk: the run is `budget_exhausted`, and this is not retried. */
  budgetExhausted?: string;
}

export interface ChunkRunOptions {
  signal?: AbortSignal;
  /** Trigger.dev attempt number; from the second on, claims of dead attempts are taken back first. */
  attempt?: number;
  /**
   * The Trigger.dev run. With it the run's worker id is the same in every
   * process that runs this attempt (one resumed after a wait finds the
   * provider batches it submitted); without it, a new id per call.
   */
  triggerRunId?: string;
  /**
   * How a batch-mode chunk waits between polls of its provider batches. The
   * stage task passes the SDK's `wait.for`: the run is checkpointed and
   * suspended, billed nothing and holding no concurrency slot, and may resume
   * in another process. Default: a timer in this process.
   */
  wait?: (ms: number) => Promise<void>;
  /** The shortest wait between polls (the engine's `batchPollMs` may be shorter). */
  minWaitMs?: number;
}

/** Waits between polls of a provider batch: from the engine's `batchPollMs`, growing by half each time to `batchPollMaxMs`. */
const BATCH_WAIT_GROWTH = 1.5;

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
  const batchable = isBatchable(def);
  const workerId = options.triggerRunId ? attemptWorkerId(options.triggerRunId, options.attempt ?? 1) : newWorkerId("trg");
  // A batch-mode chunk submits its provider batches and returns to wait here, between polls, not in the engine.
  const ctx = await open(pipeline, payload.runId, rt, workerId, options.signal, batchable);
  await heartbeat(ctx.db, ctx.workerId, ctx.runId);
  const beat = pulse(() => void heartbeat(ctx.db, ctx.workerId, ctx.runId).catch(() => {}), Math.max(250, ctx.options.leaseMs / 3));
  // A worker shut down (or a process left at a checkpoint) stops beating.
  options.signal?.addEventListener("abort", () => beat.stop(), { once: true });
  try {
    if ((options.attempt ?? 1) > 1) {
      // Earlier attempts of this run have ended (the platform starts the next one after): what they held is taken over at once.
      if (options.triggerRunId) for (let a = 1; a < options.attempt!; a++) await retireWorker(ctx.db, attemptWorkerId(options.triggerRunId, a));
      await reclaimStale(ctx);
    }
    // A provider batch whose run died is polled and collected, never submitted again.
    const resumedBatches = isLlmStage(def) && !batchable ? await resumeBatches(ctx, payload.stageIndex) : 0;
    const ids = await claimableInRange(ctx, payload.stageIndex, payload.first, payload.last);
    let results: Awaited<ReturnType<typeof executeStageChunk>> = [];
    try {
      if (batchable) {
        const out = await submitWaitCollect(ctx, payload, options, beat);
        const written = new Set(out.results.map((r) => r.itemId)).size;
        ctx.logger.info(`stage ${payload.stageId} chunk ${payload.chunk}${payload.round ? ` (sweep ${payload.round})` : ""}: ${written} item(s) written after ${out.waits} wait(s)`, { resumedBatches: out.resumedBatches });
        return { stageId: payload.stageId, round: payload.round, chunk: payload.chunk, queued: out.queued, executed: written, resumedBatches: out.resumedBatches, waits: out.waits, byStatus: countByStatus(out.results) };
      }
      if (ids.length) results = await executeStageChunk(ctx, payload.stageIndex, ids);
    } catch (err) {
      // A budget reached is not a failure to retry: the run stops, its items queued for a larger budget.
      if (!(err instanceof BudgetExhaustedError)) throw err;
      await stopAtBudget(ctx, err);
      return { stageId: payload.stageId, round: payload.round, chunk: payload.chunk, queued: ids.length, executed: 0, resumedBatches, byStatus: {}, budgetExhausted: err.message };
    }
    const byStatus = countByStatus(results);
    ctx.logger.info(`stage ${payload.stageId} chunk ${payload.chunk}${payload.round ? ` (sweep ${payload.round})` : ""}: ${results.length} of ${ids.length} queued item(s) written`, { byStatus, resumedBatches });
    return { stageId: payload.stageId, round: payload.round, chunk: payload.chunk, queued: ids.length, executed: results.length, resumedBatches, byStatus };
  } finally {
    beat.stop();
    // Retiring makes whatever this run still holds reclaimable at once, not after the lease.
    await retireWorker(ctx.db, ctx.workerId).catch(() => {});
  }
}

interface Pulse {
  start(): void;
  stop(): void;
}

/** A heartbeat timer that can stop for a wait and start again after it. */
function pulse(fn: () => void, everyMs: number): Pulse {
  let timer: NodeJS.Timeout | undefined;
  const p: Pulse = {
    start() {
      p.stop();
      timer = setInterval(fn, everyMs);
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
  };
  p.start();
  return p;
}

/** The worker id of one attempt of a Trigger.dev run: the same in every process that runs it. */
function attemptWorkerId(triggerRunId: string, attempt: number): string {
  return `trg_${triggerRunId}_a${attempt}`;
}

function countByStatus(results: { status: string }[]): Record<string, number> {
  const byStatus: Record<string, number> = {};
  for (const r of results) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  return byStatus;
}

/**
 * A batch-mode chunk: collect what this run (in an earlier process) or a dead
 * one left in flight; submit the range's queued items as provider batches;
 * then, while any is in flight, wait (`options.wait`: checkpointed on
 * Trigger.dev) and poll again. Items a batch handed back as retryable go out
 * in another batch, up to the engine's attempts per item. Everything needed
 * after a wait is in the store, so the process that resumes may be a new one.
 */
async function submitWaitCollect(ctx: RunContext, payload: ChunkPayload, options: ChunkRunOptions, beat: Pulse) {
  const wait = options.wait ?? ((ms: number) => sleep(ms, ctx.signal));
  const results: ItemResult[] = [];
  let queued: number | undefined;
  const min = options.minWaitMs ?? 0;
  let interval = Math.max(min, ctx.options.batchPollMs);
  let waits = 0;
  let submissions = 0;
  let resumedBatches = 0;
  for (;;) {
    const polled = await collectBatches(ctx, payload.stageIndex);
    results.push(...polled.results);
    if (submissions === 0) resumedBatches += polled.collected;
    if (polled.inFlight > 0) {
      // Dated ahead: a suspended run cannot beat, and its batches must not look orphaned meanwhile.
      beat.stop();
      await heartbeat(ctx.db, ctx.workerId, ctx.runId, interval);
      // No later than a batch's cutoff for the deadline (or the poll after it was cancelled there), even if that is a short wait.
      const ms = polled.pollBy ? Math.max(0, Math.min(interval, polled.pollBy.getTime() - Date.now())) : interval;
      ctx.logger.info(`stage ${payload.stageId} chunk ${payload.chunk}: ${polled.inFlight} provider batch(es) in flight; next poll in ${Math.round(ms / 100) / 10} s`);
      await wait(ms);
      waits++;
      interval = Math.max(min, Math.min(ctx.options.batchPollMaxMs, Math.round(interval * BATCH_WAIT_GROWTH)));
      // Restored in this process (memory kept), the run beats again; resumed in a new one, this line runs there.
      await heartbeat(ctx.db, ctx.workerId, ctx.runId);
      beat.start();
      continue;
    }
    const ids = await claimableInRange(ctx, payload.stageIndex, payload.first, payload.last);
    queued ??= ids.length;
    if (ids.length === 0 || submissions >= ctx.options.maxAttempts) break;
    submissions++;
    // Items answered without a call (reused, cached, gated) are written at once; the rest go out in provider batches.
    results.push(...(await executeStageChunk(ctx, payload.stageIndex, ids)));
  }
  return { results, queued: queued ?? 0, waits, resumedBatches };
}

async function open(pipeline: PipelineDef, runId: string, rt: TriggerRuntime, workerId: string, signal?: AbortSignal, deferBatches = false): Promise<RunContext> {
  try {
    const engine = deferBatches ? { ...rt.engine, deferBatchCollection: true } : rt.engine;
    const { ctx } = await openRun({ db: rt.db, pipeline, providers: rt.providers, runId, workerId, options: engine, logger: rt.logger, signal });
    return ctx;
  } catch (err) {
    // No such run, or its stage versions differ from this deploy's: not transient.
    if (err instanceof SluiceError) throw new AbortTaskRunError(err.message);
    throw err;
  }
}
