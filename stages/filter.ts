import { defineStage, type FunctionStage, type ReadOutputs, type StageInput, type StageRead } from "sluice/core";

export interface FilterRule<Item, Outputs = Record<string, unknown>> {
  /** Shown as the reason an item was dropped. */
  name: string;
  drops: (input: StageInput<Item, Outputs>) => boolean;
}

/** What a rules filter hands the stages after it. */
export interface FilterVerdict {
  keep: boolean;
  reason: string | null;
}

/**
 * A rules filter: the first rule that matches drops the item (it is
 * `gated_out` from here on, with the rule's name as the reason). Cheap, no
 * model call; put it first so expensive stages never see junk.
 *
 * @example
 * ruleFilter({ id: "filter", codeVersion: "1", rules: [{ name: "empty", drops: ({ item }) => !item.body.trim() }] });
 */
export function ruleFilter<Item = any, const Id extends string = string, const R extends readonly StageRead[] = readonly StageRead[]>(options: {
  id: Id;
  codeVersion: string;
  reads?: R;
  rules: FilterRule<Item, ReadOutputs<R>>[];
}): FunctionStage<Item, FilterVerdict, ReadOutputs<R>, Id> & { reads?: R } {
  const stage: FunctionStage<Item, FilterVerdict, ReadOutputs<R>, Id> & { reads?: R } = {
    id: options.id,
    kind: "filter",
    codeVersion: options.codeVersion,
    run: (input) => {
      for (const rule of options.rules) if (rule.drops(input)) return { keep: false, reason: rule.name };
      return { keep: true, reason: null };
    },
  };
  if (options.reads) stage.reads = options.reads;
  return defineStage(stage);
}
