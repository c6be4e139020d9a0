import { existsSync } from "node:fs";
import { AbortTaskRunError, idempotencyKeys } from "@trigger.dev/sdk";
import type { PipelineDef } from "../../core/types.ts";
import {
  createOrContinueRun, currentRun, ensureLoaded, finalizeRun, openRun, planStages, prepareStage, reclaimStale, reopenAfterBudget, runStartedBy, sleep, stageCounts, stageDone, stopAfterOf,
  type RunContext, type StagePlan,
} from "../../engine/index.ts";
import { summarizeRun, type RunSummary } from "../../inspect/summary.ts";
import { chunkRanges, type ChunkRange } from "./chunks.ts";
import { isBatchable, MAX_RUNS_PER_BATCH } from "./plan.ts";
import { wavesOf } from "../../core/dag.ts";
import { inputFor, triggerRuntime, type TriggerRuntime } from "./runtime.ts";
import { publishProgress, runTags, tagOrchestrator, type StageProgress } from "./observe.ts";
import type { ChunkPayload } from "./stage.ts";

/** What starts an orchestrator run: an existing sluice run, or an input to start one over. */
export interface OrchestratorPayload {
  /** A run already created (and usually loaded) in the shared store, e.g. by `submitRun`. */
  runId?: string;
  /** An input file the orchestrator's machine can read; defaults to `SLUICE_INPUT_<PIPELINE>`. */
  inputPath?: string;
  /** Set when the finished commit stage of another pipeline started this run. */
  upstream?: { pipeline: string; runId: string };
  /** Set when a schedule started this run. */
  scheduledAt?: string;
  /**
   * The run's budget in USD, replacing the one recorded for it: a run that
   * stopped at its budget goes on when its orchestrator is triggered again
   * with `{ runId, budget }`.
   */
  budget?: number;
}

export interface DispatchItem {
  payload: ChunkPayload;
  options: { idempotencyKey: string; tags: string[] };
}

/** Runs of one batch that finished well or failed (after their own retries). */
export interface BatchOutcome {
  ok: number;
  failed: number;
}

export interface OrchestratorDeps {
  pipeline: PipelineDef;
  /** Trigger one batch (at most 1,000 runs) of a stage's task and wait until every run has finished. */
  dispatch(stage: StagePlan, items: DispatchItem[]): Promise<BatchOutcome>;
  /**
   * Trigger one batch (at most 1,000 runs) of several stages' tasks and wait
   * until every run has finished; whether each run ended well, in order.
   * Stages that read nothing of each other go out this way, together.
   */
  dispatchTogether?(items: { stage: StagePlan; item: DispatchItem }[]): Promise<boolean[]>;
  /** Pipelines that run after this one's commit stage finishes. */
  downstream: string[];
  /** Start a downstream pipeline's orchestrator; fire and forget. */
  startDownstream(pipelineId: string, payload: OrchestratorPayload, idempotencyKey: string): Promise<void>;
}

export interface RoundReport {
  round: number;
  chunks: number;
  /** Runs per `batchTriggerAndWait` call, in order. */
  batches: number[];
  failedRuns: number;
}

export interface OrchestratorOutput {
  summary: RunSummary;
  stages: { stageId: string; rounds: RoundReport[] }[];
  downstream: string[];
}

/**
 * The body of a pipeline's orchestrator task: prepare each stage, fan its
 * items out to stage-task runs in chunks, wait, and go on to the next stage.
 * Stages that read nothing of each other (branches: one wave of `wavesOf`)
 * are prepared and fanned out together, in the same batches.
 *
 * Every dispatch carries an idempotency key built from (sluice run, stage,
 * chunk, round) and the Trigger.dev run of this orchestrator. Round 0 cuts
 * chunks over all of a stage's items and sends those with open items, so a
 * retried attempt of this orchestrator re-sends the same keys for whatever is
 * still in flight and Trigger.dev starts none of them twice. Another
 * orchestrator run for the same sluice run (a re-trigger with `{ runId }`)
 * has keys of its own: it sends the chunks still open, and only those, even
 * where an earlier orchestrator's run of that chunk succeeded or was
 * cancelled (Trigger.dev keeps the keys of both for 30 days).
 *
 * @example
 * const out = await orchestrate({ pipeline, dispatch, downstream: [], startDownstream }, { inputPath: "tickets.csv" }, ctx.run.id);
 */
export async function orchestrate(deps: OrchestratorDeps, payload: OrchestratorPayload, triggerRunId: string, signal?: AbortSignal): Promise<OrchestratorOutput> {
  const rt = await triggerRuntime();
  const runId = await resolveRun(rt, deps.pipeline, payload, triggerRunId);
  const { ctx, run } = await openRun({ db: rt.db, pipeline: deps.pipeline, providers: rt.providers, runId, options: rt.engine, logger: rt.logger, signal, budgetUsd: payload.budget });
  await tagOrchestrator(runId, deps.pipeline.id, ctx.logger);
  const stages: OrchestratorOutput["stages"] = [];
  const progress: Record<string, StageProgress> = {};
  const stopAfter = stopAfterOf(ctx, run);
  let exhausted = false;
  if (run.status !== "finished") {
    await reopenAfterBudget(ctx, run);
    await ensureLoaded(ctx, run);
    // Stage by stage; where the stages branch, the stages of one wave (reading nothing of each other) fanned out together.
    const planned = ctx.plan.slice(0, stopAfter + 1);
    for (const wave of wavesOf(planned.map((s) => s.reads)).map((w) => w.map((i) => planned[i]!))) {
      for (const stage of wave) await prepareStage(ctx, stage.index);
      const rounds = await runWave(ctx, wave, rt, deps, triggerRunId, progress);
      for (const stage of wave) stages.push({ stageId: stage.id, rounds: rounds.get(stage.index)! });
      // A chunk run reached the run's budget: the run has stopped (no sweep, no next stage), its items queued.
      if ((exhausted = (await currentRun(ctx)).status === "budget_exhausted")) break;
    }
    if (!exhausted) await finalizeRun(ctx, { stopAfter });
  }
  const summary = await summarizeRun(rt.db, runId);
  if (exhausted) ctx.logger.warn(`run ${runId} stopped at a budget; trigger the orchestrator again with { runId: "${runId}", budget } to go on`);
  const last = ctx.plan[ctx.plan.length - 1]!;
  const committed = !exhausted && last.kind === "commit" && stopAfter === last.index;
  const started: string[] = [];
  if (committed) {
    for (const id of deps.downstream) {
      // The upstream run id is the key: a retried orchestrator starts each downstream run once.
      const key = await idempotencyKeys.create([runId], { scope: "global" });
      const inputPath = inputFor(rt, id) ?? run.input_path ?? undefined;
      await deps.startDownstream(id, { inputPath, upstream: { pipeline: deps.pipeline.id, runId } }, key);
      started.push(id);
    }
  }
  return { summary, stages, downstream: started };
}

async function resolveRun(rt: TriggerRuntime, pipeline: PipelineDef, payload: OrchestratorPayload, triggerRunId: string): Promise<string> {
  if (payload.runId) return payload.runId;
  const existing = await runStartedBy(rt.db, pipeline.id, triggerRunId);
  if (existing) return existing;
  const inputPath = payload.inputPath ?? inputFor(rt, pipeline.id);
  if (!inputPath) {
    const env = `SLUICE_INPUT_${pipeline.id.toUpperCase().replace(/-/g, "_")}`;
    throw new AbortTaskRunError(`pipeline ${pipeline.id} has no input: pass { runId } or { inputPath } in the payload, or set ${env}`);
  }
  if (!existsSync(inputPath)) throw new AbortTaskRunError(`cannot read input ${inputPath} on this worker: no such file`);
  const { run } = await createOrContinueRun(rt.db, pipeline, planStages(pipeline), inputPath, {
    fresh: true,
    runner: "trigger",
    triggerRunId,
    ...(payload.upstream ? { upstreamRunId: payload.upstream.runId, upstreamPipeline: payload.upstream.pipeline } : {}),
    ...(payload.scheduledAt ? { scheduledAt: payload.scheduledAt } : {}),
  });
  return run.id;
}

/**
 * Dispatch the stages of one wave in rounds until none has open items: round
 * 0 sends every chunk with open items, of all the wave's stages together;
 * later rounds sweep what is left.
 */
async function runWave(
  ctx: RunContext, wave: StagePlan[], rt: TriggerRuntime, deps: OrchestratorDeps, orchestratorRunId: string, progress: Record<string, StageProgress>,
): Promise<Map<number, RoundReport[]>> {
  const rounds = new Map(wave.map((s) => [s.index, [] as RoundReport[]]));
  // A stage that may use a provider's batch API gets big chunks, as in the
  // local runner: the half price needs many requests per provider batch.
  const sizeOf = (stage: StagePlan) => (isBatchable(ctx.pipeline.stages[stage.index]!) ? ctx.options.batchChunkSize : rt.chunkSize);
  for (const stage of wave) await publishProgress(ctx, stage, 0, undefined, progress);
  let pending = wave;
  for (let round = 0; round <= rt.maxSweeps; round++) {
    const work: WaveWork[] = [];
    for (const stage of pending) {
      // Ranges whose items are all done are not sent: a continuing orchestrator
      // (or a retried attempt after a stage finished) dispatches nothing for them.
      const ranges = (await chunkRanges(ctx, stage.index, sizeOf(stage), round > 0)).filter((r) => r.open > 0);
      if (ranges.length === 0) continue;
      ctx.logger.info(`stage ${stage.id}: ${round === 0 ? "dispatching" : `sweep ${round}: dispatching`} ${ranges.length} chunk run(s) for ${ranges.reduce((n, r) => n + r.open, 0)} open item(s)`);
      work.push({ stage, ranges });
    }
    if (work.length === 0) return rounds;
    const reports = work.length === 1
      ? [await dispatchRound(ctx, work[0]!.stage, round, work[0]!.ranges, rt.runsPerBatch, deps, orchestratorRunId)]
      : await dispatchWaveRound(ctx, work, round, rt.runsPerBatch, deps, orchestratorRunId);
    work.forEach((w, i) => rounds.get(w.stage.index)!.push(reports[i]!));
    // Stopped at a budget: the open items wait for a larger one, not for a sweep.
    if ((await currentRun(ctx)).status === "budget_exhausted") return rounds;
    const open: StagePlan[] = [];
    for (const [i, { stage }] of work.entries()) {
      const done = await stageDone(ctx, stage.index);
      const report = reports[i]!;
      await publishProgress(ctx, stage, rounds.get(stage.index)!.length, await summarizeRun(ctx.db, ctx.runId), progress);
      if (report.failedRuns) ctx.logger.warn(`stage ${stage.id}: ${report.failedRuns} of ${report.chunks} chunk run(s) failed or were cancelled`);
      if (!done) open.push(stage);
    }
    if (open.length === 0) return rounds;
    pending = open;
    // Items are still open: a chunk run failed after its retries or died
    // holding claims, or a provider batch handed items back as retryable.
    // Take back claims of dead runs (after their lease if they did not retire)
    // and sweep what is left with fresh keys; a sweep run also collects
    // provider batches whose run died.
    await reclaimStale(ctx);
    let processing = false;
    for (const stage of open) processing ||= Boolean((await stageCounts(ctx, stage.index)).byStatus.processing);
    if (processing) {
      await sleep(ctx.options.leaseMs, ctx.signal);
      await reclaimStale(ctx);
    }
  }
  const stage = pending[0]!;
  const open = await chunkRanges(ctx, stage.index, Number.MAX_SAFE_INTEGER, true);
  // Not retried: a retried attempt of this orchestrator sends the same keys
  // and gets the same finished runs back. A new orchestrator run has new keys.
  throw new AbortTaskRunError(
    `stage ${stage.id} of run ${ctx.runId} still has ${open[0]?.size ?? 0} open items after ${rt.maxSweeps + 1} dispatch rounds; ` +
      `trigger the orchestrator again with { runId: "${ctx.runId}" } to continue`,
  );
}

interface WaveWork {
  stage: StagePlan;
  ranges: ChunkRange[];
}

/**
 * One round of several stages that read nothing of each other: their chunk
 * runs go out together, in batches of at most `runsPerBatch` runs of any of
 * their tasks, so both branches of a pipeline run at once. Without
 * `dispatchTogether`, stage after stage. One report per stage, in order.
 */
export async function dispatchWaveRound(
  ctx: RunContext, work: WaveWork[], round: number, runsPerBatch: number, deps: Pick<OrchestratorDeps, "dispatch" | "dispatchTogether">, orchestratorRunId: string,
): Promise<RoundReport[]> {
  if (!deps.dispatchTogether) {
    const reports: RoundReport[] = [];
    for (const w of work) reports.push(await dispatchRound(ctx, w.stage, round, w.ranges, runsPerBatch, deps, orchestratorRunId));
    return reports;
  }
  const perBatch = Math.max(1, Math.min(MAX_RUNS_PER_BATCH, runsPerBatch));
  const reports = work.map((w): RoundReport => ({ round, chunks: w.ranges.length, batches: [], failedRuns: 0 }));
  const all = work.flatMap((w, i) => w.ranges.map((range) => ({ at: i, stage: w.stage, range })));
  for (let start = 0; start < all.length; start += perBatch) {
    const slice = all.slice(start, start + perBatch);
    const items = await Promise.all(slice.map(async ({ stage, range }) => ({ stage, item: await dispatchItem(ctx, stage, round, range, orchestratorRunId) })));
    const ok = await deps.dispatchTogether(items);
    reports.forEach((report, i) => {
      const mine = slice.flatMap((s, j) => (s.at === i ? [j] : []));
      if (mine.length) report.batches.push(mine.length);
      report.failedRuns += mine.filter((j) => !ok[j]).length;
    });
  }
  return reports;
}

/**
 * Dispatch one round of a stage: one run per range, in batches of at most
 * `runsPerBatch` (never over Trigger.dev's 1,000), one batch at a time because
 * a task may only wait on one thing at once.
 */
export async function dispatchRound(
  ctx: RunContext, stage: StagePlan, round: number, ranges: ChunkRange[], runsPerBatch: number, deps: Pick<OrchestratorDeps, "dispatch">, orchestratorRunId: string,
): Promise<RoundReport> {
  const perBatch = Math.max(1, Math.min(MAX_RUNS_PER_BATCH, runsPerBatch));
  const report: RoundReport = { round, chunks: ranges.length, batches: [], failedRuns: 0 };
  for (let start = 0; start < ranges.length; start += perBatch) {
    const items = await Promise.all(ranges.slice(start, start + perBatch).map((range) => dispatchItem(ctx, stage, round, range, orchestratorRunId)));
    const outcome = await deps.dispatch(stage, items);
    report.batches.push(items.length);
    report.failedRuns += outcome.failed;
  }
  return report;
}

/**
 * Key parts of a chunk: sluice run, stage and chunk; sweeps add their round so
 * they are new runs. The orchestrator's Trigger.dev run id comes last: its
 * retried attempts share it (and so their keys), while each new orchestrator
 * run for the same sluice run has keys of its own. Named explicitly rather
 * than by the SDK's `run` scope, so the key is the same inside a task context
 * and in a test or script that calls `orchestrate` outside one.
 */
export function chunkKeyParts(runId: string, stageId: string, chunk: number, round: number, orchestratorRunId: string): string[] {
  const parts = round === 0 ? [runId, stageId, String(chunk)] : [runId, stageId, String(chunk), `sweep-${round}`];
  return [...parts, `by-${orchestratorRunId}`];
}

async function dispatchItem(ctx: RunContext, stage: StagePlan, round: number, range: ChunkRange, orchestratorRunId: string): Promise<DispatchItem> {
  return {
    payload: {
      runId: ctx.runId,
      pipelineId: ctx.pipeline.id,
      stageIndex: stage.index,
      stageId: stage.id,
      round,
      chunk: range.chunk,
      first: range.first,
      last: range.last,
    },
    options: {
      idempotencyKey: await idempotencyKeys.create(chunkKeyParts(ctx.runId, stage.id, range.chunk, round, orchestratorRunId), { scope: "global" }),
      tags: runTags(ctx.runId, ctx.pipeline.id, stage.id),
    },
  };
}
