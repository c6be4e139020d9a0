/**
 * Ready-made stage templates: `import { llmClassify, ruleFilter } from "sluice/stages"`.
 * Each returns a plain stage definition (`defineStage` from "sluice/core"), so a
 * pipeline can mix them with stages of its own.
 */
export { upsertCommit } from "./commit.ts";
export { ruleFilter, type FilterRule } from "./filter.ts";
export { llmClassify, llmExtract, type LlmStageOptions } from "./llm.ts";
export { validateOutputs, type Rule } from "./validate.ts";
export { stagesFor } from "./typed.ts";
export type { FilterVerdict } from "./filter.ts";
