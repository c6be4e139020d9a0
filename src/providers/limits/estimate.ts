import { countRepeatedTokens, countTokens } from "../../core/tokens.ts";
import type { CompletionRequest } from "../types.ts";

/**
 * Input tokens of a request, counted before it is sent so the tokens-per-minute
 * bucket can be charged up front. The schema is counted too: providers bill the
 * structured-output schema (or forced tool) as input. The small per-message
 * overhead covers role markers; usage from the response corrects what is left.
 *
 * @example
 * estimateInputTokens({ customId: "a", model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }],
 *   schema: { name: "x", schema: { type: "object" } }, params: {} }); // ~20
 */
export function estimateInputTokens(req: CompletionRequest): number {
  // Counted once per request object: a budget's reservation and the rate limiter both ask for it.
  const known = requestCounts.get(req);
  if (known !== undefined) return known;
  let n = 8;
  if (req.system) n += countRepeatedTokens(req.system) + 4;
  for (const m of req.messages) n += countTokens(m.content) + 4;
  n += schemaTokens(req.schema.schema);
  requestCounts.set(req, n);
  return n;
}

const requestCounts = new WeakMap<CompletionRequest, number>();

// A stage's schema is one object sent with every request: counted once (about half the work per request).
const schemaCounts = new WeakMap<object, number>();

function schemaTokens(schema: object): number {
  let n = schemaCounts.get(schema);
  if (n === undefined) schemaCounts.set(schema, (n = countTokens(JSON.stringify(schema))));
  return n;
}

/**
 * A running estimate of output tokens per call for one model, so a request
 * without `maxTokens` is not charged as if it would use the whole context. It
 * starts pessimistic and moves toward what calls actually used, keeping a
 * margin above the mean.
 */
export class OutputEstimate {
  private mean: number | undefined;
  private dev = 0;

  constructor(private readonly initial = 256) {}

  /** Tokens to reserve for the answer of a call capped at `maxTokens`. */
  reserve(maxTokens: number | undefined): number {
    const guess = this.mean === undefined ? this.initial : Math.ceil(this.mean + 2 * this.dev);
    return Math.max(1, maxTokens === undefined ? guess : Math.min(maxTokens, guess));
  }

  observe(outputTokens: number): void {
    if (this.mean === undefined) {
      this.mean = outputTokens;
      this.dev = outputTokens / 4;
      return;
    }
    // Exponentially weighted mean and mean deviation, as TCP estimates round-trip time.
    const err = outputTokens - this.mean;
    this.mean += err / 8;
    this.dev += (Math.abs(err) - this.dev) / 4;
  }
}
