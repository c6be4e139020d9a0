import { sql } from "drizzle-orm";
import pLimit from "p-limit";
import { isLlmStage, type PipelineDef } from "../../core/types.ts";
import { ensureTarget } from "../../engine/commit-target.ts";
import type { EngineOptions, Logger, ProviderSet, RunContext, StagePlan } from "../../engine/context.ts";
import type { CompletionResult } from "../../providers/types.ts";
import { ensureLoaded, finalizeRun, openRun } from "../../engine/index.ts";
import { executeChunk, type ChunkHooks } from "../../engine/execute.ts";
import { advanceSegmentChunk, firstModelStage, loadSegmentChunk, segmentBarrier, segmentsOf, usesBatchApi, type SegmentChunk } from "../../engine/segment.ts";
import { advances } from "../../core/status.ts";
import type { ItemResult } from "../../engine/persist.ts";
import { resumeBatches } from "../../engine/batch.ts";
import { planStages } from "../../engine/plan.ts";
import { claimChunk, enqueueStage, heartbeat, lockChunk, pickChunk, reclaimStale, retireWorker, stageCounts, type StageCounts } from "../../engine/queue.ts";
import { createOrContinueRun } from "../../engine/runs.ts";
import { failRun, getRun, type RunRow } from "../../store/runs.ts";
import { sourceFormat } from "../../sources/index.ts";
import { statSync } from "node:fs";
import { summarizeRun, type RunSummary } from "../../engine/summary.ts";
import { sleep } from "../../engine/retry.ts";
import { SluiceError, WorkerStoppedError } from "../../core/errors.ts";
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
      for (const segment of segmentsOf(ctx, ctx.plan.slice(0, stopAfter + 1))) await runSegment(ctx, segment, opts.events);
      await finalizeRun(ctx, { stopAfter });
    }
    return await summarizeRun(ctx.db, ctx.runId);
  } catch (err) {
    // Interrupted runs stay `running` (resume continues them); anything else
    // that stopped the whole run is recorded, so `sluice status` says why.
    // A worker that stopped taking part leaves a shared run to the others.
    if (!ctx.signal?.aborted && !(err instanceof WorkerStoppedError)) await failRun(ctx.db, ctx.runId, err instanceof Error ? err.message : String(err)).catch(() => {});
    throw err;
  } finally {
    clearInterval(beat);
    await retireWorker(ctx.db, ctx.workerId).catch(() => {});
  }
}

/**
 * Execute a segment (src/engine/segment.ts): chunks are claimed at its first
 * stage and go through all its stages in memory. Items a chunk did not finish
 * (a retry waiting its turn, a chunk cut short by a crash) are picked up
 * afterwards by each later stage on its own.
 */
async function runSegment(ctx: RunContext, segment: StagePlan[], events?: RunEvents): Promise<void> {
  if (segment.length === 1) return runStage(ctx, segment[0]!, events);
  const head = segment[0]!;
  for (const stage of segment) {
    const def = ctx.pipeline.stages[stage.index]!;
    if (def.kind === "commit") await ensureTarget(ctx.db, def);
  }
  await enqueueStage(ctx, head);
  const sole = ctx.db.kind === "pglite";
  const headCounts = await stageCounts(ctx, head);
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
  // Progress per stage: a later stage's total is what has reached it so far.
  const progress = await Promise.all(
    segment.map(async (stage, i) => {
      const counts = i === 0 ? headCounts : await stageCounts(ctx, stage);
      events?.stageStarted?.(stage, counts);
      const p = { done: counts.total - counts.open, total: counts.total };
      events?.progress?.(stage, p.done, p.total);
      return p;
    }),
  );
  const open = headCounts.open;
  const { loops, chunk } = chunking(ctx, open);
  const hooks: ChunkHooks[] = segment.map((stage, i) => {
    const limit = pLimit(ctx.options.concurrency);
    return {
      acquire: <T,>(fn: () => Promise<T>) => limit(fn),
      inflight: new Map<string, Promise<CompletionResult | undefined>>(),
      onPersisted: (results: ItemResult[]) => {
        const p = progress[i]!;
        p.done += results.length;
        const after = progress[i + 1];
        if (after) after.total += results.filter((r) => advances(r.status)).length;
        events?.progress?.(stage, p.done, Math.max(p.total, p.done));
      },
    };
  });
  const modelAt = firstModelStage(ctx, segment);
  const held = new Set<string>();
  const pick = serialPicker(ctx, head, chunk, held);
  // `run`: the context chunks are executed in; on Postgres, its signal also
  // aborts when this process loses its place in the segment's barrier.
  const claimAndExecute = async (run: RunContext): Promise<number> => {
    if (!sole && modelAt > 0) {
      // Postgres, a first stage without model calls: the chunk is claimed by
      // row locks, and the stages up to the first model call are computed and
      // written in that transaction, which ends before any call is made.
      let carried: SegmentChunk | undefined;
      const n = await run.db.transaction(async (tx) => {
        await tx.rows(sql`SET LOCAL idle_in_transaction_session_timeout = '5min'`);
        const c: RunContext = { ...run, db: tx, lockedClaim: true };
        const ids = await lockChunk(c, head, chunk);
        if (ids.length === 0) return 0;
        carried = await loadSegmentChunk(c, segment, ids);
        await advanceSegmentChunk(c, segment, carried, hooks, modelAt);
        return ids.length;
      });
      if (carried) await advanceSegmentChunk(run, segment, carried, hooks);
      return n;
    }
    if (!sole) {
      const ids = await claimChunk(run, head, chunk);
      if (ids.length) await advanceSegmentChunk(run, segment, await loadSegmentChunk(run, segment, ids), hooks);
      return ids.length;
    }
    const c: RunContext = { ...run, soleWorker: true };
    const ids = await pick(c);
    try {
      if (ids.length) await advanceSegmentChunk(c, segment, await loadSegmentChunk(c, segment, ids), hooks);
    } finally {
      for (const id of ids) held.delete(id);
    }
    return ids.length;
  };
  const resume = () => (isLlmStage(ctx.pipeline.stages[head.index]!) ? resumeBatches(ctx, head, (name) => ctx.providers.get(name), hooks[0]!.onPersisted) : Promise.resolve(0));
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
  const end = await stageCounts(ctx, head);
  events?.progress?.(head, end.total, end.total);
  events?.stageFinished?.(head, end);
  // What the chunks left: each later stage on its own, in order.
  for (const stage of segment.slice(1)) await runStage(ctx, stage, events, { announced: true });
}

/** One pick at a time, so two loops of this process never take the same items (claims kept in memory, in `held`). */
function serialPicker(ctx: RunContext, stage: StagePlan, size: number, held: Set<string>) {
  let picking = Promise.resolve<unknown>(undefined);
  return (c: RunContext = ctx) => {
    const next = picking.then(async () => {
      const ids = await pickChunk(c, stage, size, held);
      for (const id of ids) held.add(id);
      return ids;
    });
    picking = next.catch(() => {});
    return next;
  };
}

/**
 * Run `loops` claim loops until the stage has nothing open. A loop that finds
 * nothing to claim waits for the others; it is woken as soon as one of them
 * finishes a chunk, so a stage ends when its last chunk does, not at the next
 * poll. When one loop fails, the others stop claiming: the run has failed.
 */
async function claimLoops(ctx: RunContext, stage: StagePlan, loops: number, claimAndExecute: () => Promise<number>, resume: () => Promise<unknown>): Promise<void> {
  let wake = () => {};
  let woken = new Promise<void>((resolve) => (wake = resolve));
  const progressed = () => {
    const previous = wake;
    woken = new Promise<void>((resolve) => (wake = resolve));
    previous();
  };
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
}

/** Execute one stage on its own. `announced`: its start was already reported (a later stage of a segment). */
async function runStage(ctx: RunContext, stage: StagePlan, events?: RunEvents, { announced = false } = {}): Promise<void> {
  const def = ctx.pipeline.stages[stage.index]!;
  if (def.kind === "commit") await ensureTarget(ctx.db, def);
  await enqueueStage(ctx, stage, { analyzeIfNone: !announced });
  const start = await stageCounts(ctx, stage);
  if (!announced) events?.stageStarted?.(stage, start);
  let done = start.total - start.open;
  events?.progress?.(stage, done, start.total);

  const llm = isLlmStage(def);
  const limit = pLimit(ctx.options.concurrency);
  const batchable = usesBatchApi(ctx, stage);
  const { loops, chunk } = batchable ? { loops: loopsFor(ctx), chunk: ctx.options.batchChunkSize } : chunking(ctx, start.open);
  const hooks = {
    acquire: <T,>(fn: () => Promise<T>) => limit(fn),
    inflight: new Map<string, Promise<CompletionResult | undefined>>(),
    onPersisted: (results: unknown[]) => {
      done += results.length;
      events?.progress?.(stage, done, start.total);
    },
  };
  // Batches a crashed process left in flight are polled and collected first
  // (their items are open: nothing open, no batch).
  const resume = () => (llm ? resumeBatches(ctx, stage, (name) => ctx.providers.get(name), hooks.onPersisted) : Promise.resolve(0));
  if (start.open > 0) await resume();
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
  const pickHeld = serialPicker(ctx, stage, chunk, held);
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
  // Nothing open (the usual case for a later stage of a segment): no loops.
  if (start.open > 0) await claimLoops(ctx, stage, loops, claimAndExecute, resume);
  const end = await stageCounts(ctx, stage);
  events?.progress?.(stage, end.total, end.total);
  events?.stageFinished?.(stage, end);
}

/**
 * Several chunks in flight: some compute while the others' reads and writes
 * are in the database, and provider slots stay busy while a chunk's slowest
 * item finishes. Embedded PGlite runs queries one at a time in this thread,
 * so two are enough there; a Postgres server works on others' in parallel.
 */
function loopsFor(ctx: RunContext): number {
  return ctx.db.kind === "pglite" ? 2 : 4;
}

/**
 * Chunks as large as `chunkSize` (each chunk costs a few round trips; with
 * 128-item chunks classify was about 40% slower on the demo), but a small
 * stage is still cut into enough chunks for every loop, and for another
 * process sharing the run, to get some. Provider calls in flight are bounded
 * by each stage's concurrency limit, not by the chunk.
 */
function chunking(ctx: RunContext, open: number): { loops: number; chunk: number } {
  const loops = loopsFor(ctx);
  return { loops, chunk: Math.max(1, Math.min(ctx.options.chunkSize, Math.ceil(open / (loops * 2)))) };
}
