import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import pLimit from "p-limit";
import { isLlmStage, type CommitStage, type PipelineDef } from "../../core/types.ts";
import { withdrawUncommitted } from "../../engine/commit-target.ts";
import { DEFAULT_OPTIONS, silentLogger, type EngineOptions, type Logger, type ProviderSet, type RunContext, type StagePlan } from "../../engine/context.ts";
import { executeChunk } from "../../engine/execute.ts";
import { planStages } from "../../engine/plan.ts";
import { claimChunk, enqueueStage, heartbeat, reclaimStale, retireWorker, stageCounts, type StageCounts } from "../../engine/queue.ts";
import { createOrContinueRun, finishRun, getRun, loadSource, type RunRow } from "../../engine/runs.ts";
import { summarizeRun, type RunSummary } from "../../engine/summary.ts";
import { sleep } from "../../engine/retry.ts";
import { SluiceError } from "../../core/errors.ts";
import type { Database } from "../../store/database.ts";

/** What the local runner reports while it works; the CLI turns these into progress bars or lines. */
export interface RunEvents {
  runStarted?(run: RunRow, continued: boolean): void;
  loaded?(rowsRead: number): void;
  stageStarted?(stage: StagePlan, counts: StageCounts): void;
  progress?(stage: StagePlan, done: number, total: number): void;
  stageFinished?(stage: StagePlan, counts: StageCounts): void;
}

export interface LocalRunOptions {
  db: Database;
  pipeline: PipelineDef;
  providers: ProviderSet;
  events?: RunEvents;
  logger?: Logger;
  options?: Partial<EngineOptions>;
  signal?: AbortSignal;
}

export function newWorkerId(): string {
  return `w_${hostname().slice(0, 20)}_${process.pid}_${randomBytes(3).toString("hex")}`;
}

/**
 * Run a pipeline over an input file with the embedded, in-process runner.
 * Continues the unfinished run of the same pipeline and input if there is one.
 *
 * @example
 * const summary = await runPipeline({ db, pipeline, providers }, "examples/data/tickets.csv");
 */
export async function runPipeline(opts: LocalRunOptions, inputPath: string, runOptions: Record<string, unknown> = {}): Promise<RunSummary> {
  const plan = planStages(opts.pipeline);
  const { run, continued } = await createOrContinueRun(opts.db, opts.pipeline, plan, inputPath, runOptions);
  opts.events?.runStarted?.(run, continued);
  return driveRun(opts, run);
}

/** Continue a run by id (after a crash, or from a second process sharing the run). */
export async function resumeRun(opts: LocalRunOptions, runId: string): Promise<RunSummary> {
  const run = await getRun(opts.db, runId);
  if (!run) throw new SluiceError(`no run ${runId} in ${opts.db.description}`);
  if (run.pipeline !== opts.pipeline.id) throw new SluiceError(`run ${runId} belongs to pipeline ${run.pipeline}, not ${opts.pipeline.id}`);
  opts.events?.runStarted?.(run, true);
  return driveRun(opts, run);
}

async function driveRun(opts: LocalRunOptions, run: RunRow): Promise<RunSummary> {
  const plan = planStages(opts.pipeline);
  const recorded = run.stages.map((s) => `${s.id}@${s.version}`).join(",");
  const current = plan.map((s) => `${s.id}@${s.version}`).join(",");
  if (recorded !== current) {
    throw new SluiceError(`run ${run.id} was started with stages ${recorded}; the pipeline now defines ${current}. Start a new run (sluice run, or sluice rerun) instead of resuming this one`);
  }
  const ctx: RunContext = {
    db: opts.db,
    pipeline: opts.pipeline,
    providers: opts.providers,
    runId: run.id,
    workerId: newWorkerId(),
    plan,
    options: { ...DEFAULT_OPTIONS, ...opts.options },
    logger: opts.logger ?? silentLogger,
    signal: opts.signal,
  };
  await heartbeat(ctx.db, ctx.workerId, ctx.runId);
  const beat = setInterval(() => void heartbeat(ctx.db, ctx.workerId, ctx.runId).catch(() => {}), Math.max(250, ctx.options.leaseMs / 3));
  try {
    if (run.status !== "finished") {
      if (!run.loaded_at) {
        const rows = await loadSource(ctx, run.input_path ?? "");
        opts.events?.loaded?.(rows);
      }
      // Embedded PGlite is single-process, so any claim not ours is from a dead process.
      await reclaimStale(ctx, ctx.db.kind === "pglite");
      const stop = typeof run.options.stopAfter === "number" ? run.options.stopAfter : plan.length - 1;
      for (const stage of plan.slice(0, stop + 1)) await runStage(ctx, stage, opts.events);
      const last = plan[plan.length - 1]!;
      if (stop === plan.length - 1 && last.kind === "commit") {
        await withdrawUncommitted(ctx.db, opts.pipeline.stages[last.index] as CommitStage, ctx.runId, last.index);
      }
      await finishRun(ctx.db, ctx.runId);
    }
    return await summarizeRun(ctx.db, ctx.runId);
  } finally {
    clearInterval(beat);
    await retireWorker(ctx.db, ctx.workerId).catch(() => {});
  }
}

async function runStage(ctx: RunContext, stage: StagePlan, events?: RunEvents): Promise<void> {
  const def = ctx.pipeline.stages[stage.index]!;
  if (def.kind === "commit") {
    const { ensureTarget } = await import("../../engine/commit-target.ts");
    await ensureTarget(ctx.db, def);
  }
  await enqueueStage(ctx, stage);
  const start = await stageCounts(ctx, stage);
  events?.stageStarted?.(stage, start);
  let done = start.total - start.open;
  events?.progress?.(stage, done, start.total);

  const llm = isLlmStage(def);
  const limit = pLimit(ctx.options.concurrency);
  const chunk = ctx.options.chunkSize;
  // Two chunks in flight keep provider slots busy while one chunk's slowest item finishes.
  const loops = llm ? 2 : 1;
  const hooks = {
    acquire: <T>(fn: () => Promise<T>) => limit(fn),
    onPersisted: (results: unknown[]) => {
      done += results.length;
      events?.progress?.(stage, done, start.total);
    },
  };
  const worker = async () => {
    for (;;) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      const ids = await claimChunk(ctx, stage, chunk);
      if (ids.length) {
        await executeChunk(ctx, stage, ids, hooks);
        continue;
      }
      const counts = await stageCounts(ctx, stage);
      if (counts.open === 0) return;
      // Another worker holds the rest: wait for it, and take over if it died.
      await reclaimStale(ctx);
      await sleep(200, ctx.signal);
    }
  };
  await Promise.all(Array.from({ length: loops }, worker));
  const end = await stageCounts(ctx, stage);
  events?.progress?.(stage, end.total, end.total);
  events?.stageFinished?.(stage, end);
}
