import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import pLimit from "p-limit";
import { SluiceError } from "../core/errors.ts";
import { parseDuration } from "../core/duration.ts";
import type { PipelineDef } from "../core/types.ts";
import type { Database } from "../store/database.ts";
import { reopenRun, requireRun, setRunDeadline, type RunRow } from "../store/runs.ts";
import { releaseHolder } from "../store/budgets.ts";
import { retireWorker as storeRetireWorker } from "../store/workers.ts";
import * as work from "../store/work.ts";
import { collectReadyBatches, resumeBatches as collectOrphanBatches } from "./batch.ts";
import { DEFAULT_OPTIONS, silentLogger, stageRef, type EngineOptions, type Logger, type ProviderSet, type RunContext, type StagePlan } from "./context.ts";
import { enqueueStage, ensureTargets } from "./drive/queue.ts";
import { executeChunk, type ChunkHooks } from "./execute.ts";
import { planStages } from "./plan.ts";
import type { ItemResult } from "./results.ts";
import { versionsOf } from "./runs.ts";
import { openBudget } from "./budget.ts";

/**
 * The engine's surface for runners. The local runner and the Trigger.dev
 * tasks both drive a run through these calls; neither executes a stage, or
 * writes to the store, any other way.
 *
 * - The local runner: `openRun`, then `driveRun` (the engine schedules
 *   everything: segments, claims, loops, barriers).
 * - The Trigger.dev orchestrator and stage tasks: `prepareStage`,
 *   `stageChunks`, `executeStageChunk`, `stageDone`, `finalizeRun`: the
 *   orchestrator fans chunks out as task runs, and each run executes one.
 */
export { createOrContinueRun } from "./runs.ts";
export { driveRun, ensureLoaded, finalizeRun, stopAfterOf } from "./drive/index.ts";
export type { RunEvents } from "./drive/events.ts";
export { planStages } from "./plan.ts";
export { heartbeat } from "../store/workers.ts";
export { runStartedBy, type RunRow } from "../store/runs.ts";
export { stopAtBudget } from "./drive/index.ts";
export type { StageCounts } from "../store/work.ts";
export type { EngineOptions, ProviderSet, RunContext, StagePlan, Logger } from "./context.ts";
export type { ItemResult } from "./results.ts";
export { sleep } from "./retry.ts";

/** A worker stops: its row goes (what it held is claimable at once), and so does what it held of a budget. */
export async function retireWorker(db: Database, workerId: string): Promise<void> {
  await releaseHolder(db, workerId);
  await storeRetireWorker(db, workerId);
}

/** The run as it is now in the store (its status: another process may have ended it at a budget). */
export function currentRun(ctx: RunContext): Promise<RunRow> {
  return requireRun(ctx.db, ctx.runId);
}

/** A run that stopped at its budget goes on: it is marked running again (with the budget it now has). */
export async function reopenAfterBudget(ctx: RunContext, run: RunRow): Promise<void> {
  if (run.status === "budget_exhausted") await reopenRun(ctx.db, run.id);
}

export function newWorkerId(prefix = "w"): string {
  return `${prefix}_${hostname().slice(0, 20)}_${process.pid}_${randomBytes(3).toString("hex")}`;
}

export interface OpenRunOptions {
  db: Database;
  pipeline: PipelineDef;
  providers: ProviderSet;
  runId: string;
  workerId?: string;
  options?: Partial<EngineOptions>;
  logger?: Logger;
  signal?: AbortSignal;
  /** The run's budget in USD: replaces the cap recorded for it (`--budget` on run, resume and rerun). */
  budgetUsd?: number;
  /** The run's deadline, counted from its start (`--deadline 6h`): replaces one recorded for it. */
  deadline?: string;
}

/** A context for working on one run, after checking the pipeline still defines the stages the run was planned with. */
export async function openRun(opts: OpenRunOptions): Promise<{ ctx: RunContext; run: RunRow }> {
  const run = await requireRun(opts.db, opts.runId, opts.pipeline.id);
  const plan = planStages(opts.pipeline);
  const recorded = run.stages.map((s) => `${s.id}@${s.version}`).join(",");
  const current = versionsOf(plan);
  if (recorded !== current) {
    throw new SluiceError(`run ${run.id} was started with stages ${recorded}; the pipeline now defines ${current}. Start a new run (sluice run, or sluice rerun) instead of resuming this one`);
  }
  const workerId = opts.workerId ?? newWorkerId();
  const options = { ...DEFAULT_OPTIONS, ...opts.options };
  const logger = opts.logger ?? silentLogger;
  const budget = await openBudget({ db: opts.db, pipeline: opts.pipeline, pipelineId: opts.pipeline.id, runId: run.id, holder: workerId, budgetUsd: opts.budgetUsd, leaseMs: options.leaseMs, providers: opts.providers, logger });
  const runStartedAt = new Date(run.created_at);
  if (opts.deadline !== undefined) {
    const at = new Date(runStartedAt.getTime() + parseDuration(opts.deadline, "--deadline"));
    await setRunDeadline(opts.db, run.id, at);
    run.options = { ...run.options, deadlineAt: at.toISOString() };
  }
  const deadlineAt = typeof run.options.deadlineAt === "string" ? new Date(run.options.deadlineAt) : undefined;
  return {
    run,
    ctx: { db: opts.db, pipeline: opts.pipeline, providers: opts.providers, runId: run.id, workerId, plan, options, logger, signal: opts.signal, budget, runStartedAt, deadlineAt },
  };
}

/**
 * Queue a stage for every item that reached it and return the queued item ids
 * in a stable order (for a runner that hands out explicit chunks).
 */
export async function prepareStage(ctx: RunContext, stageIndex: number): Promise<string[]> {
  const stage = stageAt(ctx, stageIndex);
  await ensureTargets(ctx, [stage]);
  await enqueueStage(ctx, stage);
  return work.claimableIds(ctx.db, stageRef(ctx, stage));
}

/** A stage's items as ranges of `size` ids, in the store's order: all of them, or those still open. */
export function stageChunks(ctx: RunContext, stageIndex: number, size: number, openOnly: boolean) {
  return work.idRanges(ctx.db, stageRef(ctx, stageAt(ctx, stageIndex)), size, openOnly);
}

/** The ids of a range of a stage's items that are still waiting to be claimed. */
export function claimableInRange(ctx: RunContext, stageIndex: number, first: string, last: string): Promise<string[]> {
  return work.claimableIds(ctx.db, stageRef(ctx, stageAt(ctx, stageIndex)), { first, last });
}

/**
 * Execute one stage for the given items: claims those still queued (an item
 * already done, or claimed by someone else, is skipped), then gates, reuses,
 * computes and persists them. Safe to call twice with the same chunk. A
 * budget reached throws `BudgetExhaustedError` (see `stopAtBudget`).
 */
export async function executeStageChunk(ctx: RunContext, stageIndex: number, itemIds: string[], hooks: Partial<ChunkHooks> = {}): Promise<ItemResult[]> {
  const stage = stageAt(ctx, stageIndex);
  const claimed = await work.claimItems(ctx.db, stageRef(ctx, stage), ctx.workerId, itemIds);
  if (claimed.length === 0) return [];
  const limit = pLimit(ctx.options.concurrency);
  try {
    return await executeChunk(ctx, stage, claimed, { acquire: hooks.acquire ?? ((fn) => limit(fn)), onPersisted: hooks.onPersisted });
  } finally {
    // What this chunk's calls cost is settled before the task run ends.
    await ctx.budget?.flush();
  }
}

/**
 * Provider batches of this stage whose worker is gone are polled and
 * collected (never submitted again). Returns how many were taken over.
 */
export function resumeBatches(ctx: RunContext, stageIndex: number): Promise<number> {
  return collectOrphanBatches(ctx, stageAt(ctx, stageIndex), (name) => ctx.providers.get(name));
}

/**
 * Poll, once each, the provider batches of this stage that this worker holds
 * or whose worker is gone, and collect those that ended (with
 * `deferBatchCollection`, a chunk submits and returns; this collects).
 * Returns how many are still in flight, how many were collected, the results
 * written, and `pollBy`: when to look again at the latest (a batch's cutoff
 * for the run's deadline, or soon after one was cancelled at it).
 */
export function collectBatches(ctx: RunContext, stageIndex: number): Promise<{ inFlight: number; collected: number; results: ItemResult[]; pollBy?: Date }> {
  return collectReadyBatches(ctx, stageAt(ctx, stageIndex), (name) => ctx.providers.get(name));
}

/** Put back in the queue what workers without a heartbeat within the lease had claimed. */
export function reclaimStale(ctx: RunContext): Promise<number> {
  return work.reclaimStale(ctx.db, ctx.runId, ctx.workerId, ctx.options.leaseMs);
}

/** A stage's items by status, with how many are still open (queued, in flight, or waiting to be retried). */
export function stageCounts(ctx: RunContext, stageIndex: number): Promise<work.StageCounts> {
  return work.stageCounts(ctx.db, stageRef(ctx, stageAt(ctx, stageIndex)));
}

/** True when no item of the stage is still queued or in flight. */
export async function stageDone(ctx: RunContext, stageIndex: number): Promise<boolean> {
  return (await stageCounts(ctx, stageIndex)).open === 0;
}

function stageAt(ctx: RunContext, index: number): StagePlan {
  const stage = ctx.plan[index];
  if (!stage) throw new SluiceError(`pipeline ${ctx.pipeline.id} has no stage ${index}`);
  return stage;
}
