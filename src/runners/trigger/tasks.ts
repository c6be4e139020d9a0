import { batch, concurrencyLimit, idempotencyKeys, schedules, task, tasks, wait, type Task } from "@trigger.dev/sdk";
import type { PipelineDef } from "../../core/types.ts";
import { orchestrate, type OrchestratorDeps, type OrchestratorOutput, type OrchestratorPayload } from "./orchestrate.ts";
import { planTriggerTasks, type PipelineTaskPlan, type RunnerLimits, type StageTaskPlan } from "./plan.ts";
import { triggerRuntime } from "./runtime.ts";
import { senseNewFiles, senseNewRows, type FilesTick, type SensorTick } from "./sensors.ts";
import { runStageChunk, type ChunkOutput, type ChunkPayload } from "./stage.ts";

/**
 * Who retries what. The engine owns every retry that is about an item:
 * transient provider errors (backoff honouring retry-after), quality repair,
 * dead-lettering; their outcome is persisted as the item's status and never
 * thrown. The task-level retry below only covers the chunk run itself failing
 * (worker crash, out of memory, database unreachable). A retried chunk claims
 * only items still queued, so it recomputes nothing that was written.
 */
const STAGE_RETRY = { maxAttempts: 3, minTimeoutInMs: 1_000, maxTimeoutInMs: 10_000, factor: 2, randomize: true };

/** A retried orchestrator re-sends the same idempotency keys, so retrying it is safe. */
const ORCHESTRATOR_RETRY = { maxAttempts: 3, minTimeoutInMs: 5_000, maxTimeoutInMs: 60_000, factor: 2, randomize: true };

/** Compute seconds per chunk run: a chunk of slow LLM calls with engine backoff fits well inside (a batch chunk's waits do not count). */
const STAGE_MAX_DURATION = 900;

/**
 * Waits between polls of a provider batch shorter than this are made
 * longer: the SDK checkpoints (and stops billing) only waits over 5 s.
 */
const MIN_BATCH_WAIT_S = 10;

/**
 * Between polls of its provider batches a chunk run of a `batch`/`auto` stage
 * waits with `wait.for`: checkpointed, billed nothing, holding no concurrency
 * slot, and possibly resumed in another process (the chunk finds its batches
 * in the store). A 24 h provider batch costs the compute of its polls.
 */
const batchWait = (ms: number) => wait.for({ seconds: Math.max(1, Math.ceil(ms / 1000)) });

/** Compute seconds per orchestrator run. Time spent waiting on a batch is checkpointed and does not count. */
const ORCHESTRATOR_MAX_DURATION = 3_600;

export interface DefineSluiceTasksOptions {
  /** Provider RPM budgets that set stage concurrency (see `stageConcurrency`). */
  limits?: RunnerLimits;
  /** Name of the provider a stage without `provider` calls, if known where tasks are defined. */
  defaultProvider?: string;
}

export interface SluicePipelineTasks {
  plan: PipelineTaskPlan;
  orchestrator: Task<string, OrchestratorPayload, OrchestratorOutput>;
  stages: Task<string, ChunkPayload, ChunkOutput>[];
  schedule?: ScheduledTask;
  /** For a pipeline with `onNewRows` (a run per new cursor value) or `onNewFiles` (a run per new file fingerprint): its scheduled sensor task. */
  sensor?: ReturnType<typeof schedules.task<string, SensorTick | FilesTick, undefined>>;
  /** How the orchestrator dispatches and chains: exposed so a test can drive `orchestrate` or `dispatchRound` with the production calls. */
  deps: OrchestratorDeps;
}

type ScheduledTask = ReturnType<typeof schedules.task<string, { orchestratorRunId: string }, undefined>>;

/**
 * Turn pipeline definitions into Trigger.dev tasks: an orchestrator per
 * pipeline, a task per stage that executes one chunk of items through the
 * engine, a scheduled task for a pipeline that declares `schedule`, and a
 * scheduled sensor task for one that declares `onNewRows` or `onNewFiles`.
 * Call it at the top level of a file under `trigger/` with pipelines imported
 * statically, so the bundler includes them and every import of the file
 * defines the same task ids.
 *
 * @example
 * // trigger/sluice.ts
 * import ticketTriage from "../pipelines/ticket-triage.ts";
 * export const sluice = defineSluiceTasks([ticketTriage], { limits: limitsFromEnv(process.env) });
 */
export function defineSluiceTasks(pipelines: PipelineDef[], options: DefineSluiceTasksOptions = {}): Map<string, SluicePipelineTasks> {
  const plans = planTriggerTasks(pipelines, options.limits, options.defaultProvider);
  const limits = new Map<string, ReturnType<typeof concurrencyLimit>>();
  const sharedLimit = (name: string, total: number) => {
    let limit = limits.get(name);
    if (!limit) limits.set(name, (limit = concurrencyLimit({ name, total })));
    return limit;
  };
  const out = new Map<string, SluicePipelineTasks>();
  pipelines.forEach((pipeline, i) => {
    const plan = plans[i]!;
    const stages = plan.stages.map((stagePlan) => defineStageTask(pipeline, stagePlan, sharedLimit));
    const deps: OrchestratorDeps = {
      pipeline,
      downstream: plan.downstream,
      async dispatch(stage, items) {
        // One wait at a time: Trigger.dev refuses concurrent waits in one run.
        const result = await stages[stage.index]!.batchTriggerAndWait(items);
        const failed = result.runs.filter((r) => !r.ok).length;
        return { ok: result.runs.length - failed, failed };
      },
      async dispatchTogether(items) {
        // Both branches in one batch, so one wait covers them.
        const result = await batch.triggerByTaskAndWait(items.map(({ stage, item }) => ({ task: stages[stage.index]!, payload: item.payload, options: item.options })));
        return result.runs.map((r) => r.ok);
      },
      async startDownstream(pipelineId, payload, idempotencyKey) {
        const target = plans.find((p) => p.pipelineId === pipelineId)!;
        await tasks.trigger(target.orchestratorTaskId, payload, { idempotencyKey, tags: [`after:${pipeline.id}`] });
      },
    };
    const orchestrator = task({
      id: plan.orchestratorTaskId,
      description: `sluice pipeline ${pipeline.id}: dispatches each stage in chunks and waits for it`,
      retry: ORCHESTRATOR_RETRY,
      maxDuration: ORCHESTRATOR_MAX_DURATION,
      run: (payload: OrchestratorPayload, { ctx, signal }) => orchestrate(deps, payload ?? {}, ctx.run.id, signal),
    });
    const schedule = plan.schedule
      ? schedules.task({
          id: plan.schedule.taskId,
          description: `sluice pipeline ${pipeline.id} on schedule ${plan.schedule.cron} (${plan.schedule.timezone})`,
          cron: { pattern: plan.schedule.cron, timezone: plan.schedule.timezone },
          run: async (payload) => {
            const scheduledAt = payload.timestamp.toISOString();
            // One pipeline run per tick, even if this scheduled run is retried.
            const idempotencyKey = await idempotencyKeys.create([pipeline.id, "schedule", scheduledAt], { scope: "global" });
            const handle = await orchestrator.trigger({ scheduledAt }, { idempotencyKey, tags: [`schedule:${pipeline.id}`] });
            return { orchestratorRunId: handle.id };
          },
        })
      : undefined;
    const sensor = plan.sensor
      ? schedules.task({
          id: plan.sensor.taskId,
          description:
            plan.sensor.watches === "rows"
              ? `sluice pipeline ${pipeline.id} when rows arrive past its ${pipeline.source.cursor} cursor`
              : `sluice pipeline ${pipeline.id} when a file matching ${pipeline.source.glob} arrives or changes`,
          cron: { pattern: plan.sensor.cron },
          run: async (): Promise<SensorTick | FilesTick> => {
            const { db } = await triggerRuntime();
            return plan.sensor!.watches === "rows" ? senseNewRows(db, pipeline) : senseNewFiles(db, pipeline, globCwd());
          },
        })
      : undefined;
    out.set(pipeline.id, { plan, orchestrator, stages, schedule, sensor, deps });
  });
  return out;
}

/** Where a glob source's pattern is matched on a worker: `SLUICE_GLOB_DIR` (a mounted folder), else the working directory. */
function globCwd(): string {
  return process.env.SLUICE_GLOB_DIR || process.cwd();
}

function defineStageTask(pipeline: PipelineDef, plan: StageTaskPlan, sharedLimit: (name: string, total: number) => ReturnType<typeof concurrencyLimit>) {
  const concurrency = plan.concurrency.kind === "provider" ? sharedLimit(plan.concurrency.limit, plan.concurrency.total) : { total: plan.concurrency.total };
  return task({
    id: plan.taskId,
    description: `sluice stage ${pipeline.id}/${plan.stageId}: one chunk of items through the engine`,
    concurrency,
    retry: STAGE_RETRY,
    maxDuration: STAGE_MAX_DURATION,
    run: (payload: ChunkPayload, { ctx, signal }) =>
      runStageChunk(pipeline, payload, { signal, attempt: ctx.attempt?.number, triggerRunId: ctx.run.id, ...(plan.batchable ? { wait: batchWait, minWaitMs: MIN_BATCH_WAIT_S * 1000 } : {}) }),
  });
}
