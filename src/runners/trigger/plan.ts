import { isLlmStage, type PipelineDef, type StageDef } from "../../core/types.ts";

/**
 * What the Trigger.dev runner registers for a set of pipelines: task ids,
 * concurrency limits, schedules and `after` links. Pure: the task
 * definitions (`tasks.ts`) and `sluice schedule list` both read it, so what
 * the CLI shows is what a deploy registers.
 */

/** Trigger.dev refuses a batch of more runs than this (server `STREAMING_BATCH_MAX_ITEMS`). */
export const MAX_RUNS_PER_BATCH = 1000;

/** Items per stage-task run when nothing else is configured. */
export const DEFAULT_CHUNK_SIZE = 100;

/** Provider calls one stage-task run keeps in flight (the engine's `concurrency` inside a chunk). */
export const DEFAULT_CALLS_PER_RUN = 8;

/** Concurrent runs of a deterministic stage (no provider behind it: CPU and database bound). */
export const DEFAULT_LOCAL_CONCURRENCY = 10;

/**
 * Concurrent runs of `mode: "batch"` stages per provider. Such a run holds its
 * slot only while it submits or collects: while it waits for its provider
 * batches it is suspended, and Trigger.dev releases the slot.
 */
export const DEFAULT_BATCH_CONCURRENCY = 4;

/** Concurrent runs per provider limit when no requests-per-minute budget is declared. */
export const DEFAULT_LLM_CONCURRENCY = 4;

/**
 * Requests per minute one provider call slot sustains, assuming about two
 * seconds per call. Used only to turn an RPM budget into a run count; each
 * run's own limiter still paces by the provider's rate-limit headers.
 */
export const RPM_PER_CALL_SLOT = 30;

export interface RunnerLimits {
  /** Requests per minute budget per provider name (`openai`, `anthropic`, `inprocess`). */
  rpm?: Partial<Record<string, number>>;
  /** Provider calls in flight per stage-task run. Default {@link DEFAULT_CALLS_PER_RUN}. */
  callsPerRun?: number;
}

export interface StageTaskPlan {
  stageIndex: number;
  stageId: string;
  taskId: string;
  /** Concurrency of the stage task: its own cap, or the shared limit of the provider it calls. */
  concurrency: StageConcurrency;
  /** An LLM stage in `batch` or `auto` mode: its chunk runs may submit and poll a provider batch. */
  batchable: boolean;
}

export type StageConcurrency =
  | { kind: "stage"; total: number }
  | { kind: "provider"; provider: string; limit: string; total: number };

export interface PipelineTaskPlan {
  pipelineId: string;
  orchestratorTaskId: string;
  stages: StageTaskPlan[];
  schedule?: { taskId: string; cron: string; timezone: string };
  /**
   * A pipeline with `onNewRows` or `onNewFiles`: the scheduled task that looks
   * past its source's cursor (a run per new cursor value) or for files its glob
   * matches that it has not read (a run per new file fingerprint).
   */
  sensor?: { taskId: string; cron: string; watches: "rows" | "files" };
  /** The upstream pipeline whose finished commit stage starts this one. */
  after?: string;
  /** Pipelines that declare `after: <this pipeline>`. */
  downstream: string[];
}

export function orchestratorTaskId(pipelineId: string): string {
  return `sluice-${pipelineId}`;
}

export function stageTaskId(pipelineId: string, stageId: string): string {
  return `sluice-${pipelineId}--${stageId}`;
}

export function scheduleTaskId(pipelineId: string): string {
  return `sluice-${pipelineId}--schedule`;
}

export function sensorTaskId(pipelineId: string): string {
  return `sluice-${pipelineId}--sensor`;
}

/** How often the Trigger.dev sensor task of an `onNewRows` or `onNewFiles` pipeline looks: every minute. */
export const SENSOR_CRON = "* * * * *";

/**
 * The provider a stage without `provider` calls: the one the provider preset
 * makes the default. Override with `SLUICE_DEFAULT_PROVIDER` where tasks are defined.
 */
export const DEFAULT_PROVIDER = "openai";

/** The provider a stage calls, when it calls one. */
export function stageProvider(stage: StageDef, defaultProvider = DEFAULT_PROVIDER): string | undefined {
  return isLlmStage(stage) ? (stage.provider ?? defaultProvider) : undefined;
}

/**
 * Concurrency of a stage task. An LLM stage holds a named limit shared by every
 * stage (of every pipeline) calling the same provider, so together they stay
 * inside that provider's budget: `rpm / (callsPerRun * RPM_PER_CALL_SLOT)` runs
 * at once, at least 1. A `mode: "batch"` stage holds the provider's batch limit
 * instead (`sluice-provider-<name>-batch`), so provider batches in flight never
 * take realtime slots. An `auto` stage may go either way and holds the
 * realtime one. A deterministic stage only caps itself.
 *
 * @example
 * stageConcurrency(classifyStage, { rpm: { openai: 3000 } });
 * // { kind: "provider", provider: "openai", limit: "sluice-provider-openai", total: 12 }
 */
export function stageConcurrency(stage: StageDef, limits: RunnerLimits = {}, defaultProvider?: string): StageConcurrency {
  const provider = stageProvider(stage, defaultProvider);
  if (!provider) return { kind: "stage", total: DEFAULT_LOCAL_CONCURRENCY };
  // Batch-mode stages make no realtime calls (but a repair): they hold a limit of their own, never a realtime slot.
  if (isLlmStage(stage) && stage.mode === "batch") return { kind: "provider", provider, limit: batchLimitName(provider), total: DEFAULT_BATCH_CONCURRENCY };
  const rpm = limits.rpm?.[provider];
  const perRun = (limits.callsPerRun ?? DEFAULT_CALLS_PER_RUN) * RPM_PER_CALL_SLOT;
  const total = rpm && rpm > 0 ? Math.max(1, Math.floor(rpm / perRun)) : DEFAULT_LLM_CONCURRENCY;
  return { kind: "provider", provider, limit: providerLimitName(provider), total };
}

/** Whether the engine may send this stage's calls through a provider's batch API. */
export function isBatchable(stage: StageDef): boolean {
  return isLlmStage(stage) && (stage.mode === "batch" || stage.mode === "auto");
}

export function providerLimitName(provider: string): string {
  return `sluice-provider-${provider.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

/** The limit `mode: "batch"` stages calling a provider share: apart from its realtime one. */
export function batchLimitName(provider: string): string {
  return `${providerLimitName(provider)}-batch`;
}

/**
 * Every task the runner registers for these pipelines. Throws when two
 * pipelines share an id or an `after` names a pipeline that is not in the set.
 *
 * @example
 * planTriggerTasks([ticketTriage]).map((p) => p.orchestratorTaskId); // ["sluice-ticket-triage"]
 */
export function planTriggerTasks(pipelines: PipelineDef[], limits: RunnerLimits = {}, defaultProvider?: string): PipelineTaskPlan[] {
  const ids = new Set(pipelines.map((p) => p.id));
  if (ids.size !== pipelines.length) throw new Error("two pipelines share one id");
  return pipelines.map((pipeline) => {
    if (pipeline.after !== undefined && !ids.has(pipeline.after)) {
      throw new Error(`pipeline ${pipeline.id} runs after "${pipeline.after}", which is not among the pipelines: ${[...ids].join(", ")}`);
    }
    if (pipeline.after === pipeline.id) throw new Error(`pipeline ${pipeline.id} cannot run after itself`);
    return {
      pipelineId: pipeline.id,
      orchestratorTaskId: orchestratorTaskId(pipeline.id),
      stages: pipeline.stages.map((stage, stageIndex) => ({
        stageIndex,
        stageId: stage.id,
        taskId: stageTaskId(pipeline.id, stage.id),
        concurrency: stageConcurrency(stage, limits, defaultProvider),
        batchable: isBatchable(stage),
      })),
      ...(pipeline.onNewRows || pipeline.onNewFiles ? { sensor: { taskId: sensorTaskId(pipeline.id), cron: SENSOR_CRON, watches: pipeline.onNewRows ? ("rows" as const) : ("files" as const) } } : {}),
      schedule: pipeline.schedule
        ? { taskId: scheduleTaskId(pipeline.id), cron: pipeline.schedule.cron, timezone: pipeline.schedule.timezone ?? "UTC" }
        : undefined,
      after: pipeline.after,
      downstream: pipelines.filter((p) => p.after === pipeline.id).map((p) => p.id),
    };
  });
}

/**
 * RPM budgets from the environment: `SLUICE_RPM_OPENAI=3000` and the like.
 * Read when the tasks are defined, so set them where the worker is built and indexed.
 *
 * @example
 * limitsFromEnv({ SLUICE_RPM_OPENAI: "3000" }); // { rpm: { openai: 3000 } }
 */
export function limitsFromEnv(env: Record<string, string | undefined>): RunnerLimits {
  const rpm: Record<string, number> = {};
  for (const [name, value] of Object.entries(env)) {
    const m = /^SLUICE_RPM_([A-Z0-9_]+)$/.exec(name);
    const n = Number(value);
    if (m && Number.isFinite(n) && n > 0) rpm[m[1]!.toLowerCase()] = n;
  }
  const calls = Number(env.SLUICE_TRIGGER_CALLS_PER_RUN);
  return { rpm, callsPerRun: Number.isInteger(calls) && calls > 0 ? calls : undefined };
}
