/**
 * The Trigger.dev runner: the same pipelines and the same engine as the local
 * runner, dispatched as Trigger.dev v4 tasks over a shared Postgres.
 * `trigger/sluice.ts` defines the tasks; `submitRun` starts a run from outside.
 */
export { defineSluiceTasks, type DefineSluiceTasksOptions, type SluicePipelineTasks } from "./tasks.ts";
export { orchestrate, dispatchRound, chunkKeyParts, type OrchestratorPayload, type OrchestratorOutput, type OrchestratorDeps, type DispatchItem, type BatchOutcome, type RoundReport } from "./orchestrate.ts";
export { runStageChunk, type ChunkPayload, type ChunkOutput, type ChunkRunOptions } from "./stage.ts";
export { submitRun, submitFromEnv, type SubmitRunOptions, type SubmittedRun } from "./submit.ts";
export { configureTriggerRunner, triggerRuntime, closeTriggerRuntime, inputsFromEnv, workerPoolFromEnv, WORKER_POOL, type TriggerRuntime, type TriggerRuntimeOverrides } from "./runtime.ts";
export { chunkRanges, type ChunkRange } from "./chunks.ts";
export { triggerLogger, runTags, type StageProgress } from "./observe.ts";
export {
  planTriggerTasks, stageConcurrency, limitsFromEnv, orchestratorTaskId, stageTaskId, scheduleTaskId, providerLimitName, batchLimitName,
  MAX_RUNS_PER_BATCH, DEFAULT_CHUNK_SIZE, DEFAULT_BATCH_CONCURRENCY,
  type PipelineTaskPlan, type StageTaskPlan, type StageConcurrency, type RunnerLimits,
} from "./plan.ts";
