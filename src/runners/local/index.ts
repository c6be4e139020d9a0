import { sql } from "drizzle-orm";
import pLimit from "p-limit";
import { isLlmStage, type PipelineDef } from "../../core/types.ts";
import { ensureTarget } from "../../engine/commit-target.ts";
import type { EngineOptions, Logger, ProviderSet, RunContext, StagePlan } from "../../engine/context.ts";
import type { CompletionResult } from "../../providers/types.ts";
import { ensureLoaded, finalizeRun, openRun } from "../../engine/index.ts";
import { executeChunk } from "../../engine/execute.ts";
import { providerNameOf } from "../../engine/llm-call.ts";
import { resumeBatches } from "../../engine/batch.ts";
import { planStages } from "../../engine/plan.ts";
import { claimChunk, enqueueStage, heartbeat, lockChunk, pickChunk, reclaimStale, retireWorker, stageCounts, type StageCounts } from "../../engine/queue.ts";
import { createOrContinueRun, failRun, getRun, type RunRow } from "../../engine/runs.ts";
import { sourceFormat } from "../../sources/index.ts";
import { statSync } from "node:fs";
import { summarizeRun, type RunSummary } from "../../engine/summary.ts";
import { sleep } from "../../engine/retry.ts";
import { SluiceError } from "../../core/errors.ts";
export { newWorkerId } from "../../engine/index.ts";
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

/**
 * Run a pipeline over an input file with the embedded, in-process runner.
 * Continues the unfinished run of the same pipeline and input if there is one.
 *
 * @example
 * const summary = await runPipeline({ db, pipeline, providers }, "examples/data/tickets.csv");
 */
export async function runPipeline(opts: LocalRunOptions, inputPath: string, runOptions: Record<string, unknown> = {}): Promise<RunSummary> {
  checkInput(inputPath, opts.pipeline);
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

/** An input that cannot be read at all stops here, before a run is recorded. */
function checkInput(path: string, pipeline: PipelineDef): void {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw new SluiceError(`cannot read input ${path}: no such file`);
  }
  if (!stat.isFile()) throw new SluiceError(`cannot read input ${path}: not a file`);
  sourceFormat(path, pipeline.source);
}

/**
 * Runs being driven in this process, per database. On embedded PGlite this
 * process is the only worker and keeps its claims in memory, so a second
 * driver of the same run here would compute (and pay for) items twice.
 */
const driving = new WeakMap<Database, Set<string>>();

async function driveRun(opts: LocalRunOptions, run: RunRow): Promise<RunSummary> {
  const active = driving.get(opts.db) ?? new Set<string>();
  driving.set(opts.db, active);
  if (active.has(run.id)) throw new SluiceError(`run ${run.id} is already running in this process`);
  active.add(run.id);
  try {
    return await drive(opts, run);
  } finally {
    active.delete(run.id);
  }
}

async function drive(opts: LocalRunOptions, run: RunRow): Promise<RunSummary> {
  const { ctx } = await openRun({ ...opts, runId: run.id });
  await heartbeat(ctx.db, ctx.workerId, ctx.runId);
  const beat = setInterval(() => void heartbeat(ctx.db, ctx.workerId, ctx.runId).catch(() => {}), Math.max(250, ctx.options.leaseMs / 3));
  try {
    if (run.status !== "finished") {
      if (!run.loaded_at) {
        const rows = await ensureLoaded(ctx, run);
        opts.events?.loaded?.(rows);
      }
      // Embedded PGlite is single-process, so any claim not ours is from a dead process.
      await reclaimStale(ctx, ctx.db.kind === "pglite");
      const stopAfter = typeof run.options.stopAfter === "number" ? run.options.stopAfter : ctx.plan.length - 1;
      for (const stage of ctx.plan.slice(0, stopAfter + 1)) await runStage(ctx, stage, opts.events);
      await finalizeRun(ctx, { stopAfter });
    }
    return await summarizeRun(ctx.db, ctx.runId);
  } catch (err) {
    // Interrupted runs stay `running` (resume continues them); anything else
    // that stopped the whole run is recorded, so `sluice status` says why.
    if (!ctx.signal?.aborted) await failRun(ctx.db, ctx.runId, err instanceof Error ? err.message : String(err)).catch(() => {});
    throw err;
  } finally {
    clearInterval(beat);
    await retireWorker(ctx.db, ctx.workerId).catch(() => {});
  }
}

async function runStage(ctx: RunContext, stage: StagePlan, events?: RunEvents): Promise<void> {
  const def = ctx.pipeline.stages[stage.index]!;
  if (def.kind === "commit") await ensureTarget(ctx.db, def);
  await enqueueStage(ctx, stage);
  const start = await stageCounts(ctx, stage);
  events?.stageStarted?.(stage, start);
  let done = start.total - start.open;
  events?.progress?.(stage, done, start.total);

  const llm = isLlmStage(def);
  const limit = pLimit(ctx.options.concurrency);
  // Only a provider with a batch API can take a stage's items as one batch.
  const batchable = llm && (def.mode === "batch" || def.mode === "auto") && Boolean(ctx.providers.get(providerNameOf(ctx, def)).batch);
  // Several chunks in flight: some compute while the others' reads and writes
  // are in the database, and provider slots stay busy while a chunk's slowest
  // item finishes. Embedded PGlite runs queries one at a time in this thread,
  // so two are enough there; a Postgres server works on others' in parallel.
  const loops = ctx.db.kind === "pglite" ? 2 : 4;
  // Chunks as large as `chunkSize` (each chunk costs a few round trips; with
  // 128-item chunks classify was about 40% slower on the demo), but a small
  // stage is still cut into enough chunks for every loop, and for another
  // process sharing the run, to get some. Provider calls in flight are bounded
  // by the stage's concurrency limit, not by the chunk.
  const chunk = batchable ? ctx.options.batchChunkSize : Math.max(1, Math.min(ctx.options.chunkSize, Math.ceil(start.open / (loops * 2))));
  const hooks = {
    acquire: <T>(fn: () => Promise<T>) => limit(fn),
    inflight: new Map<string, Promise<CompletionResult | undefined>>(),
    onPersisted: (results: unknown[]) => {
      done += results.length;
      events?.progress?.(stage, done, start.total);
    },
  };
  // Batches a crashed process left in flight are polled and collected first.
  const resume = () => (llm ? resumeBatches(ctx, stage, (name) => ctx.providers.get(name), hooks.onPersisted) : Promise.resolve(0));
  await resume();
  // How a chunk is claimed:
  // - A stage without model calls is quick: its chunk is claimed, computed and
  //   written in one transaction. On Postgres the claim is row locks (no writes;
  //   they go with the connection if the process dies); embedded PGlite has one
  //   process, and its transactions run one at a time, so it needs no lock.
  // - Model calls are slow and paid for: their results are committed as they
  //   come, outside one long transaction. On Postgres the chunk is claimed
  //   under a lease (a write per item); on PGlite claims are kept in memory.
  const sole = ctx.db.kind === "pglite";
  const held = new Set<string>();
  let picking = Promise.resolve<unknown>(undefined);
  const pickHeld = (c: RunContext) => {
    // One pick at a time, so two loops never take the same items.
    const next = picking.then(async () => {
      const ids = await pickChunk(c, stage, chunk, held);
      for (const id of ids) held.add(id);
      return ids;
    });
    picking = next.catch(() => {});
    return next;
  };
  const claimAndExecute = async (): Promise<number> => {
    if (!llm) {
      return ctx.db.transaction(async (tx) => {
        // Locks held by a process whose host vanished (no kill, no closed
        // socket) are released when the server gives up on its transaction.
        if (!sole) await tx.rows(sql`SET LOCAL idle_in_transaction_session_timeout = '5min'`);
        const c: RunContext = { ...ctx, db: tx, lockedClaim: true, soleWorker: sole };
        const ids = sole ? await pickChunk(c, stage, chunk, held) : await lockChunk(c, stage, chunk);
        if (ids.length) await executeChunk(c, stage, ids, hooks);
        return ids.length;
      });
    }
    if (!sole) {
      const ids = await claimChunk(ctx, stage, chunk);
      if (ids.length) await executeChunk(ctx, stage, ids, hooks);
      return ids.length;
    }
    const c: RunContext = { ...ctx, soleWorker: true };
    const ids = await pickHeld(c);
    try {
      if (ids.length) await executeChunk(c, stage, ids, hooks);
    } finally {
      for (const id of ids) held.delete(id);
    }
    return ids.length;
  };
  // A loop that finds nothing to claim waits for the others; it is woken as
  // soon as one of them finishes a chunk, so a stage ends when its last chunk
  // does, not at the next poll.
  let wake = () => {};
  let woken = new Promise<void>((resolve) => (wake = resolve));
  const progressed = () => {
    const previous = wake;
    woken = new Promise<void>((resolve) => (wake = resolve));
    previous();
  };
  // When one loop fails, the others stop claiming: the run has failed.
  let failed = false;
  const worker = async () => {
    try {
      await loop();
    } catch (err) {
      failed = true;
      progressed();
      throw err;
    }
  };
  const loop = async () => {
    for (;;) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      if (failed) return;
      const claimed = await claimAndExecute();
      if (claimed > 0) {
        progressed();
        continue;
      }
      const counts = await stageCounts(ctx, stage);
      if (counts.open === 0) return;
      // Another worker holds the rest: wait for it, and take over if it died.
      await reclaimStale(ctx);
      await resume();
      await Promise.race([sleep(200, ctx.signal), woken]);
    }
  };
  // Settled, not all: a failure waits for the other loops' chunks in flight,
  // so what they computed (and paid for) is written before the run stops.
  const settled = await Promise.allSettled(Array.from({ length: loops }, worker));
  const failure = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failure) throw failure.reason;
  const end = await stageCounts(ctx, stage);
  events?.progress?.(stage, end.total, end.total);
  events?.stageFinished?.(stage, end);
}
