import { defineStage, type Gate, type JsonSchema, type LlmParams, type LlmStage, type PromptTemplate, type ProviderMode, type ProviderName } from "sluice/core";

export interface LlmStageOptions<Item> {
  id: string;
  model: string;
  prompt: PromptTemplate;
  output: { name: string; schema: JsonSchema };
  provider?: ProviderName;
  params?: LlmParams;
  mode?: ProviderMode;
  when?: Gate<Item>;
  reads?: string[];
  check?: LlmStage<Item>["check"];
}

/**
 * An LLM classifier: the schema's enum is the label set; the engine sends it
 * as the structured-output schema and checks the answer against it.
 *
 * @example
 * llmClassify({ id: "classify", model: "gpt-4o-mini", prompt: { user: "Ticket: {{item.body}}" }, output: { name: "Classification", schema } });
 */
export function llmClassify<Item>(options: LlmStageOptions<Item>): LlmStage<Item> {
  return defineStage({ ...options, kind: "classify" as const });
}

/** An LLM extractor: structured fields out of free text, usually gated to the classes that need them. */
export function llmExtract<Item>(options: LlmStageOptions<Item>): LlmStage<Item> {
  return defineStage({ ...options, kind: "extract" as const });
}
