import type { Usage } from "./types.ts";

/**
 * One price table for every model sluice knows, in USD per million tokens.
 * Native batch calls cost half of realtime on both providers, unless a row
 * says otherwise. Each row names where its numbers come from and when they were
 * read, so a stale price is easy to spot and fix.
 */
export interface ModelPrice {
  provider: "openai" | "anthropic";
  /** USD per 1M input tokens not served from cache. */
  input: number;
  /** USD per 1M output tokens. */
  output: number;
  /** USD per 1M input tokens read from the prompt cache. */
  cachedInput: number;
  /** Batch price as a fraction of realtime. Default 0.5. */
  batchFactor?: number;
  /** The date the prices were read from `source` (list prices as published then). */
  asOf: string;
  source: string;
}

const OPENAI = "https://openai.com/api/pricing/";
const ANTHROPIC = "https://www.anthropic.com/pricing#api";

/** Keyed by the model name a stage uses; dated snapshots resolve to their base name (see `priceOf`). */
export const PRICES: Readonly<Record<string, ModelPrice>> = {
  "gpt-4o-mini": { provider: "openai", input: 0.15, output: 0.6, cachedInput: 0.075, asOf: "2025-06-01", source: OPENAI },
  "gpt-4o": { provider: "openai", input: 2.5, output: 10, cachedInput: 1.25, asOf: "2025-06-01", source: OPENAI },
  "gpt-4.1": { provider: "openai", input: 2, output: 8, cachedInput: 0.5, asOf: "2025-06-01", source: OPENAI },
  "gpt-4.1-mini": { provider: "openai", input: 0.4, output: 1.6, cachedInput: 0.1, asOf: "2025-06-01", source: OPENAI },
  "gpt-4.1-nano": { provider: "openai", input: 0.1, output: 0.4, cachedInput: 0.025, asOf: "2025-06-01", source: OPENAI },
  "gpt-5": { provider: "openai", input: 1.25, output: 10, cachedInput: 0.125, asOf: "2025-08-07", source: OPENAI },
  "gpt-5-mini": { provider: "openai", input: 0.25, output: 2, cachedInput: 0.025, asOf: "2025-08-07", source: OPENAI },
  "gpt-5-nano": { provider: "openai", input: 0.05, output: 0.4, cachedInput: 0.005, asOf: "2025-08-07", source: OPENAI },
  "claude-3-5-haiku-latest": { provider: "anthropic", input: 0.8, output: 4, cachedInput: 0.08, asOf: "2025-06-01", source: ANTHROPIC },
  "claude-3-5-haiku": { provider: "anthropic", input: 0.8, output: 4, cachedInput: 0.08, asOf: "2025-06-01", source: ANTHROPIC },
  "claude-haiku-4-5": { provider: "anthropic", input: 1, output: 5, cachedInput: 0.1, asOf: "2025-10-15", source: ANTHROPIC },
  "claude-sonnet-4-5": { provider: "anthropic", input: 3, output: 15, cachedInput: 0.3, asOf: "2025-09-29", source: ANTHROPIC },
  "claude-sonnet-4": { provider: "anthropic", input: 3, output: 15, cachedInput: 0.3, asOf: "2025-06-01", source: ANTHROPIC },
  "claude-opus-4-1": { provider: "anthropic", input: 15, output: 75, cachedInput: 1.5, asOf: "2025-08-05", source: ANTHROPIC },
};

/** Suffixes that name a snapshot of the same model at the same price: `-2024-07-18`, `-20241022`, `-latest`. */
const SNAPSHOT = /-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$/;

/**
 * The price row for a model name, or undefined when sluice has none. Exact
 * names win; a dated snapshot (`gpt-4o-mini-2024-07-18`,
 * `claude-haiku-4-5-20251001`) uses its base model's row.
 *
 * @example
 * priceOf("gpt-4o-mini-2024-07-18")?.input; // 0.15
 */
export function priceOf(model: string, table: Readonly<Record<string, ModelPrice>> = PRICES): ModelPrice | undefined {
  return table[model] ?? table[model.replace(SNAPSHOT, "")];
}

export type PriceMode = "realtime" | "batch";

export interface Cost {
  usd: number;
  /** False when the model is not in the table: `usd` is 0 and the caller should warn once. */
  priced: boolean;
}

/**
 * What a call cost, with a flag for models sluice has no price for. An
 * unknown model costs 0 rather than failing the run: a price table must never
 * stop work, but the caller is told so it can warn (and reports can say the
 * total is incomplete).
 *
 * @example
 * costBreakdown("gpt-4o-mini", { inputTokens: 1_000_000, outputTokens: 0 }, "batch"); // { usd: 0.075, priced: true }
 * costBreakdown("my-finetune", { inputTokens: 10, outputTokens: 10 }, "realtime");   // { usd: 0, priced: false }
 */
export function costBreakdown(
  model: string,
  usage: Usage,
  mode: PriceMode,
  table: Readonly<Record<string, ModelPrice>> = PRICES,
): Cost {
  const p = priceOf(model, table);
  if (!p) return { usd: 0, priced: false };
  const cached = Math.min(usage.cachedInputTokens ?? 0, usage.inputTokens);
  const realtime = ((usage.inputTokens - cached) * p.input + cached * p.cachedInput + usage.outputTokens * p.output) / 1_000_000;
  const usd = mode === "batch" ? realtime * (p.batchFactor ?? 0.5) : realtime;
  return { usd, priced: true };
}

/**
 * USD for one call's usage; 0 for a model not in the table (check with
 * `isPriced` or use `costBreakdown` to warn about it).
 *
 * @example
 * costOf("claude-sonnet-4-5", { inputTokens: 2_000, outputTokens: 500 }, "realtime"); // 0.0135
 */
export function costOf(model: string, usage: Usage, mode: PriceMode, table?: Readonly<Record<string, ModelPrice>>): number {
  return costBreakdown(model, usage, mode, table).usd;
}

/**
 * Whether sluice has a price for the model (else its calls count as $0).
 *
 * @example
 * if (!isPriced(stage.model)) log.warn(`no price for ${stage.model}; costs will read 0`);
 */
export function isPriced(model: string, table?: Readonly<Record<string, ModelPrice>>): boolean {
  return priceOf(model, table) !== undefined;
}
