import { defineStage, type Gate, type LlmParams, type LlmStage, type PromptCheck, type PromptTemplate, type ProviderMode, type ProviderName, type ReadOutputs, type Schema, type StageInput, type StageRead } from "sluice/core";

export interface LlmStageOptions<Item, Out = unknown, R extends readonly StageRead[] = readonly StageRead[], Id extends string = string, P extends PromptTemplate = PromptTemplate> {
  id: Id;
  model: string;
  /** `{{item.field}}`, `{{outputs.stage.field}}` and `{{itemId}}` slots; with typed `reads`, a slot naming nothing the stage reads fails `tsc`. */
  prompt: P & PromptCheck<P, Item, ReadOutputs<R>>;
  /** The output schema; a `Schema<T>` (generated in `schemas/types.ts`) makes `T` the type the stages reading this one see. */
  output: { name: string; schema: Schema<Out> };
  provider?: ProviderName;
  params?: LlmParams;
  mode?: ProviderMode;
  /** The stages whose outputs the gate, the prompt and `check` read; pass the stage definitions to have `outputs` typed. */
  reads?: R;
  when?: Gate<Item, ReadOutputs<R>>;
  check?: (output: Out, input: StageInput<Item, ReadOutputs<R>>) => string | undefined;
}

/**
 * An LLM classifier: the schema's enum is the label set; the engine sends it
 * as the structured-output schema and checks the answer against it.
 *
 * @example
 * llmClassify({ id: "classify", model: "gpt-4o-mini", prompt: { user: "Ticket: {{item.body}}" }, output: { name: "TicketClassification", schema: TicketClassification } });
 */
export function llmClassify<Item = any, const Id extends string = string, Out = unknown, const R extends readonly StageRead[] = readonly StageRead[], const P extends PromptTemplate = PromptTemplate>(
  options: LlmStageOptions<Item, Out, R, Id, P>,
): LlmStage<Item, Out, ReadOutputs<R>, Id> & { reads?: R } {
  return defineStage({ ...options, kind: "classify" as const });
}

/**
 * An LLM extractor: structured fields out of free text, usually gated to the classes that need them.
 *
 * @example
 * llmExtract({ id: "extract", reads: [classify], when: ({ outputs }) => outputs.classify.category === "bug", model: "gpt-4o", prompt, output: { name: "TicketFields", schema: TicketFields } });
 */
export function llmExtract<Item = any, const Id extends string = string, Out = unknown, const R extends readonly StageRead[] = readonly StageRead[], const P extends PromptTemplate = PromptTemplate>(
  options: LlmStageOptions<Item, Out, R, Id, P>,
): LlmStage<Item, Out, ReadOutputs<R>, Id> & { reads?: R } {
  return defineStage({ ...options, kind: "extract" as const });
}
