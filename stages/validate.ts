import { compileSchema, defineStage, type IdOf, type JsonSchema, type ReadOutputs, type StageInput, type StageRead, type ValidateStage, type ValidationVerdict } from "sluice/core";

export interface Rule<Item, Outputs = Record<string, unknown>> {
  name: string;
  /** Return a message when the rule is broken. */
  check: (input: StageInput<Item, Outputs>) => string | undefined;
  /** `review` sends the item to the review queue; `invalid` dead-letters it. */
  severity: "review" | "invalid";
}

/**
 * Schema checks of upstream outputs plus business rules. Nothing reaches the
 * commit stage unless this says `valid`; doubtful items go to review. The
 * stage's version covers the schemas and the rules' names and severities;
 * bump `codeVersion` when a rule's check changes.
 *
 * @example
 * validateOutputs({ id: "validate", codeVersion: "1", reads: [classify, extract], schemas: { extract: TicketFields }, rules: [] });
 */
export function validateOutputs<Item = any, const Id extends string = string, const R extends readonly StageRead[] = readonly StageRead[]>(options: {
  id: Id;
  codeVersion: string;
  reads?: R;
  schemas?: Partial<Record<IdOf<R[number]>, JsonSchema>>;
  rules: Rule<Item, ReadOutputs<R>>[];
}): ValidateStage<Item, ReadOutputs<R>, Id> & { reads?: R } {
  const checkers = Object.entries(options.schemas ?? {}).map(([stage, schema]) => [stage, compileSchema(schema as JsonSchema)] as const);
  const stage: ValidateStage<Item, ReadOutputs<R>, Id> & { reads?: R } = {
    id: options.id,
    kind: "validate",
    codeVersion: options.codeVersion,
    // A changed schema or rule list changes what this stage decides: its version covers them.
    settings: { schemas: options.schemas ?? {}, rules: options.rules.map((r) => ({ name: r.name, severity: r.severity })) },
    run: (input): ValidationVerdict => {
      const invalid: string[] = [];
      const review: string[] = [];
      for (const [stage, check] of checkers) {
        const result = check((input.outputs as Record<string, unknown>)[stage]);
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
  };
  if (options.reads) stage.reads = options.reads;
  return defineStage(stage);
}
