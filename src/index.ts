/**
 * sluice's public API, hand-picked. Definitions are plain descriptors; the
 * engine runs them; runners and providers plug in.
 *
 * @example
 * import { definePipeline, defineStage, openDatabase, runPipeline, createProviders } from "sluice";
 * import { llmClassify, ruleFilter, upsertCommit, validateOutputs } from "sluice/stages";
 *
 * A pipeline file imports `sluice/core` (definitions only, cheap to load) and
 * `sluice/stages`.
 *
 * This module must not import `stages/` or `pipelines/`: they import it.
 */

// Defining pipelines (also alone, and cheap to load, as "sluice/core")
export * from "./core/index.ts";

// Running them
export { openDatabase, type Database, type OpenOptions } from "./store/index.ts";
export { runPipeline, resumeRun, type LocalRunOptions, type RunEvents } from "./runners/local/index.ts";
export type { EngineOptions, ProviderSet } from "./engine/index.ts";
export { summarizeRun, type RunSummary, type StageSummary } from "./inspect/summary.ts";
export { prepareRerun, type RerunRequest } from "./engine/rerun.ts";
export { diffRuns, type RunDiff } from "./inspect/diff.ts";
export { compareStage, type CompareResult } from "./inspect/compare.ts";
export { stageVersions, type StageVersionInfo } from "./inspect/versions.ts";

// Providers and the ready-wired preset (simulator when no key is set)
export { costOf, createProvider, PRICES, type CreateProviderOptions } from "./providers/index.ts";
export type { BatchApi, CompletionRequest, CompletionResult, Provider } from "./providers/types.ts";
export { createProviders, type ProviderPreset } from "./preset/providers.ts";
export { startSimulator, type SimConfig, type Simulator } from "./sim/index.ts";

// Sources
export { readSource, type SourceRecord } from "./sources/index.ts";

// Starting pipelines: new input of table, query and glob sources, sensors, and a start from another system
export { runIncrement, triggerPipeline, watchPipelines, type IncrementResult, type WatchEvent, type WatchOptions } from "./sensors/index.ts";
