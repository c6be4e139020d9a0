import { describe, expect, it } from "vitest";
import { DeterministicError } from "../core/errors.ts";
import { checkBatch, defaultSizeOf, packBatches } from "./batching.ts";
import type { CompletionRequest } from "./types.ts";

function req(i: number, text = "hello"): CompletionRequest {
  return {
    customId: `r-${i}`,
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: text }],
    schema: { name: "s", schema: { type: "object" } },
    params: {},
  };
}

describe("packBatches", () => {
  it("splits by request count, keeping order", () => {
    const rs = Array.from({ length: 25 }, (_, i) => req(i));
    const groups = packBatches(rs, { maxRequests: 10, maxBytes: 1e9 });
    expect(groups.map((g) => g.length)).toEqual([10, 10, 5]);
    expect(groups.flat().map((r) => r.customId)).toEqual(rs.map((r) => r.customId));
  });

  it("splits by serialized bytes, never exceeding the limit", () => {
    const rs = Array.from({ length: 40 }, (_, i) => req(i, "x".repeat(100 + i * 37)));
    const maxBytes = 5_000;
    const groups = packBatches(rs, { maxRequests: 1_000, maxBytes });
    expect(groups.length).toBeGreaterThan(3);
    for (const g of groups) expect(g.reduce((n, r) => n + defaultSizeOf(r), 0)).toBeLessThanOrEqual(maxBytes);
    // Greedy: each group but the last could not take the next request.
    for (let i = 0; i < groups.length - 1; i++) {
      const size = groups[i]!.reduce((n, r) => n + defaultSizeOf(r), 0);
      expect(size + defaultSizeOf(groups[i + 1]![0]!)).toBeGreaterThan(maxBytes);
    }
    expect(groups.flat()).toHaveLength(40);
  });

  it("puts a request too large for any batch in a group of its own", () => {
    const rs = [req(1), req(2, "y".repeat(10_000)), req(3)];
    const groups = packBatches(rs, { maxRequests: 10, maxBytes: 2_000 });
    expect(groups.map((g) => g.map((r) => r.customId))).toEqual([["r-1"], ["r-2"], ["r-3"]]);
  });

  it("uses a custom size function", () => {
    const groups = packBatches([req(1), req(2), req(3)], { maxRequests: 10, maxBytes: 2, sizeOf: () => 1 });
    expect(groups.map((g) => g.length)).toEqual([2, 1]);
  });
});

describe("checkBatch", () => {
  const limits = { maxRequests: 3, maxBytes: 1_000 };
  it("rejects what a provider would: empty, too many, too big, bad or repeated ids", () => {
    expect(() => checkBatch("openai", [], 0, limits)).toThrow(DeterministicError);
    expect(() => checkBatch("openai", [req(1), req(2), req(3), req(4)], 10, limits)).toThrow(/exceed the batch limit of 3/);
    expect(() => checkBatch("openai", [req(1)], 1_001, limits)).toThrow(/exceeds the limit of 1000/);
    expect(() => checkBatch("openai", [{ ...req(1), customId: "has space" }], 10, limits)).toThrow(/custom id/);
    expect(() => checkBatch("openai", [req(1), req(1)], 10, limits)).toThrow(/twice/);
    expect(() => checkBatch("openai", [req(1), req(2)], 10, limits)).not.toThrow();
  });
});
