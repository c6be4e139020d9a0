/**
 * What a pipeline file needs, and nothing else: `import { definePipeline } from "sluice/core"`.
 * Definitions, their types, schema checks, errors and statuses; no I/O, no
 * provider SDKs, no database driver, so loading a pipeline stays cheap (the
 * CLI loads one for every command that names it). The whole API is `sluice`.
 */
export { defineConfig, type SluiceConfig } from "./config.ts";
export { definePipeline, defineStage, stageVersion, versionParts } from "./define.ts";
export type {
  CommitStage, FunctionStage, Gate, IdOf, JsonObject, JsonSchema, JsonValue, LlmParams, LlmStage, OutputOf, PipelineBudget, PipelineDef,
  PromptCheck, PromptTemplate, ProviderMode, ProviderName, ReadOutputs, Schema, SourceSpec, StageDef, StageInput, StageKind, StageRead, ValidateStage, ValidationVerdict,
} from "./types.ts";
export { compileSchema, type Checker, type SchemaCheck } from "./schema.ts";
export { BudgetExhaustedError, DefinitionError, DeterministicError, QualityError, SluiceError, StageHaltedError, TransientError, type FailureClass } from "./errors.ts";
export { FINAL_STATES, ITEM_STATUSES, type FinalState, type ItemStatus } from "./status.ts";
