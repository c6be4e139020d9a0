import { defineStage, type StageInput } from "sluice/core";

export interface FilterRule<Item> {
  /** Shown as the reason an item was dropped. */
  name: string;
  drops: (input: StageInput<Item>) => boolean;
}

/**
 * A rules filter: the first rule that matches drops the item (it is
 * `gated_out` from here on, with the rule's name as the reason). Cheap, no
 * model call; put it first so expensive stages never see junk.
 *
 * @example
 * ruleFilter({ id: "filter", codeVersion: "1", rules: [{ name: "empty", drops: ({ item }) => !item.body.trim() }] });
 */
export function ruleFilter<Item>(options: { id: string; codeVersion: string; rules: FilterRule<Item>[] }) {
  return defineStage({
    id: options.id,
    kind: "filter",
    codeVersion: options.codeVersion,
    run: (input: StageInput<Item>) => {
      for (const rule of options.rules) if (rule.drops(input)) return { keep: false, reason: rule.name };
      return { keep: true, reason: null };
    },
  });
}
