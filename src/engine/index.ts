import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import pLimit from "p-limit";
import { SluiceError } from "../core/errors.ts";
import type { CommitStage, PipelineDef } from "../core/types.ts";
import type { Database } from "../store/database.ts";
import { ensureTarget, withdrawUncommitted } from "./commit-target.ts";
import { DEFAULT_OPTIONS, silentLogger, type EngineOptions, type Logger, type ProviderSet, type RunContext, type StagePlan } from "./context.ts";
import { executeChunk, type ChunkHooks } from "./execute.ts";
import { planStages } from "./plan.ts";
import { claimItems, enqueueStage, stageCounts } from "./queue.ts";
import { loadSource } from "./runs.ts";
import { finishRun, getRun, type RunRow } from "../store/runs.ts";
import type { ItemResult } from "./persist.ts";
import { sql } from "drizzle-orm";

/**
 * The engine's surface for runners. The local runner and the Trigger.dev
 * tasks both drive a run through these calls; neither executes a stage any
 * other way.
 */
export { createOrContinueRun } from "./runs.ts";
export { getRun, type RunRow } from "../store/runs.ts";
export { summarizeRun, type RunSummary, type StageSummary } from "./summary.ts";
export { planStages } from "./plan.ts";
export { stageCounts, heartbeat, retireWorker, reclaimStale, type StageCounts } from "./queue.ts";
export { resumeBatches } from "./batch.ts";
export type { EngineOptions, ProviderSet, RunContext, StagePlan, Logger } from "./context.ts";
export type { ItemResult } from "./persist.ts";

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
}

/** A context for working on one run, after checking the pipeline still defines the stages the run was planned with. */
export async function openRun(opts: OpenRunOptions): Promise<{ ctx: RunContext; run: RunRow }> {
  const run = await getRun(opts.db, opts.runId);
  if (!run) throw new SluiceError(`no run ${opts.runId} in ${opts.db.description}`);
  if (run.pipeline !== opts.pipeline.id) throw new SluiceError(`run ${opts.runId} belongs to pipeline ${run.pipeline}, not ${opts.pipeline.id}`);
  const plan = planStages(opts.pipeline);
  const recorded = run.stages.map((s) => `${s.id}@${s.version}`).join(",");
  const current = plan.map((s) => `${s.id}@${s.version}`).join(",");
  if (recorded !== current) {
    throw new SluiceError(`run ${run.id} was started with stages ${recorded}; the pipeline now defines ${current}. Start a new run (sluice run, or sluice rerun) instead of resuming this one`);
  }
  return {
    run,
    ctx: {
      db: opts.db,
      pipeline: opts.pipeline,
      providers: opts.providers,
      runId: run.id,
      workerId: opts.workerId ?? newWorkerId(),
      plan,
      options: { ...DEFAULT_OPTIONS, ...opts.options },
      logger: opts.logger ?? silentLogger,
      signal: opts.signal,
    },
  };
}

/** Read the run's source into the store if that has not happened yet (idempotent). */
export async function ensureLoaded(ctx: RunContext, run: RunRow): Promise<number> {
  if (run.loaded_at) return run.rows_read;
  return loadSource(ctx, run.input_path ?? "");
}

/**
 * Queue a stage for every item that reached it and return the queued item ids
 * in a stable order (for a runner that hands out explicit chunks).
 */
export async function prepareStage(ctx: RunContext, stageIndex: number): Promise<string[]> {
  const stage = stageAt(ctx, stageIndex);
  const def = ctx.pipeline.stages[stageIndex]!;
  if (def.kind === "commit") await ensureTarget(ctx.db, def);
  await enqueueStage(ctx, stage);
  const rows = await ctx.db.rows<{ item_id: string }>(sql`
    SELECT item_id FROM work WHERE run_id = ${ctx.runId} AND stage_index = ${stageIndex}
      AND status IN ('queued', 'failed_retryable') ORDER BY item_id`);
  return rows.map((r) => r.item_id);
}

/**
 * Execute one stage for the given items: claims those still queued (an item
 * already done, or claimed by someone else, is skipped), then gates, reuses,
 * computes and persists them. Safe to call twice with the same chunk.
 */
export async function executeStageChunk(ctx: RunContext, stageIndex: number, itemIds: string[], hooks: Partial<ChunkHooks> = {}): Promise<ItemResult[]> {
  const stage = stageAt(ctx, stageIndex);
  const claimed = await claimItems(ctx, stage, itemIds);
  if (claimed.length === 0) return [];
  const limit = pLimit(ctx.options.concurrency);
  return executeChunk(ctx, stage, claimed, { acquire: hooks.acquire ?? ((fn) => limit(fn)), onPersisted: hooks.onPersisted });
}

/** Withdraw target rows of items that no longer reach the commit stage, and mark the run finished. */
export async function finalizeRun(ctx: RunContext, options: { stopAfter?: number } = {}): Promise<void> {
  const last = ctx.plan[ctx.plan.length - 1]!;
  const stop = options.stopAfter ?? last.index;
  if (stop === last.index && last.kind === "commit") {
    await withdrawUncommitted(ctx.db, ctx.pipeline.stages[last.index] as CommitStage, ctx.runId, last.index);
  }
  await finishRun(ctx.db, ctx.runId);
}

/** True when no item of the stage is still queued or in flight. */
export async function stageDone(ctx: RunContext, stageIndex: number): Promise<boolean> {
  return (await stageCounts(ctx, stageAt(ctx, stageIndex))).open === 0;
}

function stageAt(ctx: RunContext, index: number): StagePlan {
  const stage = ctx.plan[index];
  if (!stage) throw new SluiceError(`pipeline ${ctx.pipeline.id} has no stage ${index}`);
  return stage;
}
