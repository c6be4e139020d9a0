import { compileSchema, defineStage, type JsonSchema, type StageInput, type ValidationVerdict } from "sluice/core";

export interface Rule<Item> {
  name: string;
  /** Return a message when the rule is broken. */
  check: (input: StageInput<Item>) => string | undefined;
  /** `review` sends the item to the review queue; `invalid` dead-letters it. */
  severity: "review" | "invalid";
}

/**
 * Schema checks of upstream outputs plus business rules. Nothing reaches the
 * commit stage unless this says `valid`; doubtful items go to review.
 *
 * @example
 * validateOutputs({ id: "validate", codeVersion: "1", schemas: { extract: schema }, rules: [] });
 */
export function validateOutputs<Item>(options: { id: string; codeVersion: string; schemas?: Record<string, JsonSchema>; rules: Rule<Item>[] }) {
  const checkers = Object.entries(options.schemas ?? {}).map(([stage, schema]) => [stage, compileSchema(schema)] as const);
  return defineStage({
    id: options.id,
    kind: "validate",
    codeVersion: options.codeVersion,
    run: (input: StageInput<Item>): ValidationVerdict => {
      const invalid: string[] = [];
      const review: string[] = [];
      for (const [stage, check] of checkers) {
        const result = check(input.outputs[stage]);
        if (!result.ok) invalid.push(`${stage} output: ${result.errors.join("; ")}`);
      }
      for (const rule of options.rules) {
        const broken = rule.check(input);
        if (broken) (rule.severity === "invalid" ? invalid : review).push(`${rule.name}: ${broken}`);
      }
      if (invalid.length) return { status: "invalid", reasons: invalid };
      if (review.length) return { status: "review", reasons: review };
      return { status: "valid" };
    },
  });
}
