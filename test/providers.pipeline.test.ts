import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { definePipeline } from "../src/core/define.ts";
import { isLlmStage, type PipelineDef, type ProviderMode } from "../src/core/types.ts";
import type { ProviderSet } from "../src/engine/context.ts";
import { type VendorName } from "../src/providers/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { runPipelineForTest } from "../src/testing/harness.ts";
import mini from "./fixtures/pipelines/mini.ts";
import { simulatedProviders } from "./fixtures/simulated.ts";

/**
 * The provider conformance suite at the pipeline level: one pipeline, run
 * through the engine on OpenAI and Anthropic, realtime and batch, with the
 * official SDKs over HTTP to the simulator. Every combination must produce
 * the same outputs.
 */
const items = [
  { id: "p1", text: "I was charged twice on my invoice ORD-11111 for $20.00" },
  { id: "p2", text: "the app crashes with an error on export" },
  { id: "p3", text: "hello there, lovely weather" },
  { id: "p4", text: "refund of my invoice please, wrong charge" },
  { id: "p5", text: "bug: the sync fails with error 500" },
  { id: "p6", text: "" },
];

function variant(provider: VendorName, mode: ProviderMode): PipelineDef {
  return definePipeline({
    ...mini,
    stages: mini.stages.map((s) => (isLlmStage(s) ? { ...s, provider, mode } : s)),
  });
}

let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
});
afterAll(async () => {
  await sim?.close();
});

const providerSet = (): ProviderSet => simulatedProviders(sim);

describe("the same pipeline on every provider and mode", () => {
  const combos = [
    ["openai", "realtime"],
    ["openai", "batch"],
    ["anthropic", "realtime"],
    ["anthropic", "batch"],
  ] as const;
  const results: Record<string, { outputs: Record<string, unknown>; statuses: Record<string, string>; byStatus: Record<string, number> }> = {};

  for (const [provider, mode] of combos) {
    it(`${provider} ${mode}`, async () => {
      sim.reset();
      const run = await runPipelineForTest(variant(provider, mode), { items, providers: providerSet(), options: { batchPollMs: 10, batchPollMaxMs: 50 } });
      try {
        const stats = sim.stats();
        const classify = run.summary.stages.find((s) => s.id === "classify")!;
        expect(classify.providerCalls).toBe(5);
        if (mode === "batch") {
          expect(stats.batches.created).toBe(1);
          expect(stats.batchCalls).toBe(5);
          expect(stats.realtimeCalls).toBe(0);
        } else {
          expect(stats.batches.created).toBe(0);
          expect(stats.realtimeCalls).toBe(5);
        }
        // Batch calls are billed at half the realtime price, and the summary says what that saved.
        expect(classify.costUsd).toBeGreaterThan(0);
        if (mode === "batch") {
          expect(classify.batchCalls).toBe(5);
          expect(classify.batchSavedUsd).toBeCloseTo(classify.costUsd, 9);
        } else {
          expect(classify.batchSavedUsd).toBe(0);
        }
        results[`${provider}/${mode}`] = { outputs: await run.outputs("classify"), statuses: await run.statuses("commit"), byStatus: run.summary.items.byStatus };
        const byStatus = run.summary.items.byStatus;
        expect(Object.values(byStatus).reduce((a, b) => a + b, 0)).toBe(items.length);
        expect(byStatus.committed).toBeGreaterThan(0);
        expect(byStatus.gated_out).toBeGreaterThan(0);
      } finally {
        await run.close();
      }
    });
  }

  it("agrees across all four", () => {
    const keys = Object.keys(results);
    expect(keys).toHaveLength(4);
    for (const k of keys) expect(results[k]).toEqual(results["openai/realtime"]);
  });
});
