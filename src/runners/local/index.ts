import { statSync } from "node:fs";
import { SluiceError } from "../../core/errors.ts";
import type { PipelineDef } from "../../core/types.ts";
import {
  createOrContinueRun, driveRun, heartbeat, openRun, planStages, retireWorker,
  type EngineOptions, type Logger, type ProviderSet, type RunEvents,
} from "../../engine/index.ts";
import { summarizeRun, type RunSummary } from "../../inspect/summary.ts";
import { checkSource } from "../../sources/index.ts";
import type { Database } from "../../store/database.ts";

export { newWorkerId, type RunEvents } from "../../engine/index.ts";

/**
 * The embedded, in-process runner: this process is one worker of the run.
 * The engine schedules the work (`driveRun`); what is left here is what
 * belongs to a local process: checking the input file before a run is
 * recorded, the worker's heartbeat for as long as it drives, and its
 * retirement when it stops.
 */

export interface LocalRunOptions {
  db: Database;
  pipeline: PipelineDef;
  providers: ProviderSet;
  events?: RunEvents;
  logger?: Logger;
  options?: Partial<EngineOptions>;
  signal?: AbortSignal;
  /** The run's budget in USD (replaces the cap recorded for it); see `PipelineDef.budget` for the pipeline's own. */
  budgetUsd?: number;
  /** The run's deadline, counted from its start (`--deadline 6h`); `auto` stages choose batch or realtime by it. */
  deadline?: string;
}

/**
 * Run a pipeline over an input file with the embedded, in-process runner.
 * Continues the unfinished run of the same pipeline and input if there is one.
 *
 * @example
 * const summary = await runPipeline({ db, pipeline, providers }, "examples/data/tickets.csv");
 */
export async function runPipeline(opts: LocalRunOptions, inputPath: string, runOptions: Record<string, unknown> = {}): Promise<RunSummary> {
  await checkInput(inputPath, opts.pipeline);
  const { run, continued } = await createOrContinueRun(opts.db, opts.pipeline, planStages(opts.pipeline), inputPath, runOptions);
  opts.events?.runStarted?.(run, continued);
  return drive(opts, run.id);
}

/** Continue a run by id (after a crash, or from a second process sharing the run). */
export async function resumeRun(opts: LocalRunOptions, runId: string): Promise<RunSummary> {
  return drive(opts, runId, (run) => opts.events?.runStarted?.(run, true));
}

/** An input that cannot be read at all, or holds no rows, stops here, before a run is recorded. */
export async function checkInput(path: string, pipeline: PipelineDef): Promise<void> {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw new SluiceError(`cannot read input ${path}: no such file`);
  }
  if (!stat.isFile()) throw new SluiceError(`cannot read input ${path}: not a file`);
  await checkSource(path, pipeline.source);
}

async function drive(opts: LocalRunOptions, runId: string, opened?: (run: Awaited<ReturnType<typeof openRun>>["run"]) => void): Promise<RunSummary> {
  const { ctx, run } = await openRun({ ...opts, runId });
  opened?.(run);
  await heartbeat(ctx.db, ctx.workerId, ctx.runId);
  const beat = setInterval(() => void heartbeat(ctx.db, ctx.workerId, ctx.runId).catch(() => {}), Math.max(250, ctx.options.leaseMs / 3));
  try {
    await driveRun(ctx, run, opts.events);
    return await summarizeRun(ctx.db, ctx.runId);
  } finally {
    clearInterval(beat);
    await retireWorker(ctx.db, ctx.workerId).catch(() => {});
  }
}
