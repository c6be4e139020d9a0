import { describe, expect, it } from "vitest";
import { costBreakdown, costOf, isPriced, priceOf, PRICES } from "./prices.ts";

describe("prices", () => {
  it("prices a realtime call from input, cached input and output tokens", () => {
    // gpt-4o-mini: $0.15 in, $0.075 cached, $0.60 out per 1M.
    const usd = costOf("gpt-4o-mini", { inputTokens: 1_000_000, cachedInputTokens: 400_000, outputTokens: 500_000 }, "realtime");
    expect(usd).toBeCloseTo(0.6 * 0.15 + 0.4 * 0.075 + 0.5 * 0.6, 10);
  });

  it("charges half for batch unless the row says otherwise", () => {
    const usage = { inputTokens: 2_000, outputTokens: 500 };
    expect(costOf("claude-sonnet-4-5", usage, "realtime")).toBeCloseTo(0.0135, 10);
    expect(costOf("claude-sonnet-4-5", usage, "batch")).toBeCloseTo(0.00675, 10);
    const table = { special: { ...PRICES["gpt-4o"]!, batchFactor: 0.8 } };
    expect(costOf("special", usage, "batch", table)).toBeCloseTo(costOf("special", usage, "realtime", table) * 0.8, 12);
  });

  it("resolves dated snapshots and -latest to the base model, but not other variants", () => {
    expect(priceOf("gpt-4o-mini-2024-07-18")).toBe(PRICES["gpt-4o-mini"]);
    expect(priceOf("claude-haiku-4-5-20251001")).toBe(PRICES["claude-haiku-4-5"]);
    expect(priceOf("claude-3-5-haiku-latest")?.input).toBe(0.8);
    expect(priceOf("gpt-4o-audio-preview")).toBeUndefined();
  });

  it("costs an unknown model 0 and flags it", () => {
    expect(costBreakdown("my-finetune", { inputTokens: 100, outputTokens: 100 }, "realtime")).toEqual({ usd: 0, priced: false });
    expect(costOf("my-finetune", { inputTokens: 100, outputTokens: 100 }, "batch")).toBe(0);
    expect(isPriced("my-finetune")).toBe(false);
    expect(isPriced("gpt-4.1-nano")).toBe(true);
  });

  it("has the models sluice documents, each with a date and a pricing page", () => {
    for (const model of ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1-nano", "claude-3-5-haiku-latest", "claude-haiku-4-5", "claude-sonnet-4-5"]) {
      expect(PRICES[model], model).toBeDefined();
    }
    for (const [model, row] of Object.entries(PRICES)) {
      expect(row.asOf, model).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      expect(row.source, model).toMatch(/^https:\/\//);
      expect(row.output, model).toBeGreaterThan(row.input);
      expect(row.cachedInput, model).toBeLessThan(row.input);
    }
  });
});
