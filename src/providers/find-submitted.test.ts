import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimulator, type Simulator } from "../sim/index.ts";
import { createProvider } from "./index.ts";
import type { CompletionRequest } from "./types.ts";

/**
 * A submission whose answer was lost is found at the provider: on OpenAI by
 * the tag in the batch's metadata; on Anthropic (no metadata) by its size and
 * time, and only when exactly one unknown batch fits.
 */
let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
});
afterAll(async () => {
  await sim?.close();
});

const requests = (n: number, prefix: string): CompletionRequest[] =>
  Array.from({ length: n }, (_, i) => ({
    customId: `${prefix}-${i}`,
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: `ticket ${prefix} ${i}` }],
    schema: { name: "label", schema: { type: "object", properties: { category: { type: "string" } }, required: ["category"], additionalProperties: false } },
    params: {},
  }));

describe("finding a submitted batch", () => {
  it("openai: by the tag in its metadata, among many", async () => {
    const provider = createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, apiKey: "sk-test-find-1", env: {} });
    const since = new Date();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await provider.batch.submit(requests(3, `o${i}`), { tag: `sub_${i}` })).batchId);
    const known = new Set<string>();
    expect(await provider.batch.findSubmitted!("sub_3", { requests: 3, since, known })).toBe(ids[3]);
    expect(await provider.batch.findSubmitted!("sub_9", { requests: 3, since, known })).toBeUndefined();
  });

  it("anthropic: the one unknown batch of that size, and none when two fit", async () => {
    const provider = createProvider({ provider: "anthropic", baseURL: sim.anthropicBaseURL, apiKey: "sk-ant-test-find-2", env: {} });
    const since = new Date();
    const a = (await provider.batch.submit(requests(4, "a"), { tag: "sub_a" })).batchId;
    await provider.batch.submit(requests(5, "b"), { tag: "sub_b" });
    expect(await provider.batch.findSubmitted!("sub_a", { requests: 4, since, known: new Set() })).toBe(a);
    const c = (await provider.batch.submit(requests(4, "c"), { tag: "sub_c" })).batchId;
    expect(await provider.batch.findSubmitted!("sub_c", { requests: 4, since, known: new Set() })).toBeUndefined();
    expect(await provider.batch.findSubmitted!("sub_c", { requests: 4, since, known: new Set([a]) })).toBe(c);
    expect(await provider.batch.findSubmitted!("sub_x", { requests: 7, since, known: new Set() })).toBeUndefined();
  });
});
