import { defineStage, type FunctionStage, type JsonObject, type JsonSchema, type PromptTemplate, type ReadOutputs, type StageInput, type StageRead } from "sluice/core";
import { upsertCommit } from "./commit.ts";
import { ruleFilter, type FilterRule } from "./filter.ts";
import { llmClassify, llmExtract, type LlmStageOptions } from "./llm.ts";
import { validateOutputs, type Rule } from "./validate.ts";

/**
 * The stage templates for one item type. TypeScript cannot take the item type
 * from a call and infer the rest (the stage id, what it reads, its output), so
 * this fixes the item type once; every stage made from it then sees `item` and
 * the `outputs` of the stages it `reads` typed. The stages are the same plain
 * descriptors the templates return.
 *
 * @example
 * const { llmClassify, llmExtract } = stagesFor<Ticket>();
 * const classify = llmClassify({ id: "classify", model: "gpt-4o-mini", prompt, output: { name: "TicketClassification", schema: TicketClassification } });
 * const extract = llmExtract({ id: "extract", reads: [classify], when: ({ outputs }) => outputs.classify.category === "bug", ... });
 */
export function stagesFor<Item>() {
  return {
    ruleFilter: <const Id extends string, const R extends readonly StageRead[] = readonly StageRead[]>(options: {
      id: Id;
      codeVersion: string;
      reads?: R;
      rules: FilterRule<Item, ReadOutputs<R>>[];
    }) => ruleFilter<Item, Id, R>(options),
    llmClassify: <const Id extends string, Out = unknown, const R extends readonly StageRead[] = readonly StageRead[], const P extends PromptTemplate = PromptTemplate>(
      options: LlmStageOptions<Item, Out, R, Id, P>,
    ) => llmClassify<Item, Id, Out, R, P>(options),
    llmExtract: <const Id extends string, Out = unknown, const R extends readonly StageRead[] = readonly StageRead[], const P extends PromptTemplate = PromptTemplate>(
      options: LlmStageOptions<Item, Out, R, Id, P>,
    ) => llmExtract<Item, Id, Out, R, P>(options),
    validateOutputs: <const Id extends string, const R extends readonly StageRead[] = readonly StageRead[]>(options: {
      id: Id;
      codeVersion: string;
      reads?: R;
      schemas?: Parameters<typeof validateOutputs<Item, Id, R>>[0]["schemas"];
      rules: Rule<Item, ReadOutputs<R>>[];
    }) => validateOutputs<Item, Id, R>(options),
    upsertCommit: <const Id extends string, Row extends JsonObject, const R extends readonly StageRead[] = readonly StageRead[]>(options: {
      id: Id;
      table: string;
      key: string;
      columns?: JsonSchema;
      codeVersion?: string;
      reads?: R;
      row: (input: StageInput<Item, ReadOutputs<R>>) => Row;
    }) => upsertCommit<Item, Id, Row, R>(options),
    /** A stage of your own: a deterministic function (`map`, `filter`, `classify`, `extract`) of the item and what it reads. */
    functionStage: <const Id extends string, Out, const R extends readonly StageRead[] = readonly StageRead[]>(
      stage: Omit<FunctionStage<Item, Out, ReadOutputs<R>, Id>, "reads"> & { reads?: R },
    ): FunctionStage<Item, Out, ReadOutputs<R>, Id> & { reads?: R } => defineStage(stage),
  };
}
