import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { costOf, createProvider } from "../src/providers/index.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { startSimulator } from "../src/sim/index.ts";
import { memoryDatabase } from "../src/testing/databases.ts";
import demo from "../pipelines/ticket-triage.ts";

describe("the demo pays once per distinct request", () => {
  it("sends no request twice, though the data has identical tickets under different ids", async () => {
    const sim = await startSimulator({ port: 0 });
    const t = await memoryDatabase();
    try {
      const provider = createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, env: {} });
      const summary = await runPipeline(
        { db: t.db, pipeline: demo, providers: { defaultProvider: "openai", get: () => provider, cost: costOf } },
        join(import.meta.dirname, "..", "examples", "data", "tickets.csv"),
        { fresh: true },
      );
      const stats = sim.stats();
      expect(Object.entries(stats.billedByRequestHash).filter(([, n]) => n > 1)).toEqual([]);
      const calls = summary.stages.reduce((a, s) => a + s.providerCalls, 0);
      const reused = summary.stages.filter((s) => s.kind === "classify" || s.kind === "extract").reduce((a, s) => a + s.reused, 0);
      expect(reused).toBeGreaterThan(100); // identical tickets answered once
      expect(stats.billed).toBe(calls);
    } finally {
      await t.drop();
      await sim.close();
    }
  }, 120_000);
});
