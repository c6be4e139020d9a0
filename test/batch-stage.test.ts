import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { definePipeline } from "../src/core/define.ts";
import { isLlmStage } from "../src/core/types.ts";
import type { ProviderSet } from "../src/engine/context.ts";
import { costOf, createProvider } from "../src/providers/index.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { openDatabase } from "../src/store/index.ts";
import { settleStageMode, settledStageMode } from "../src/store/runs.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import mini from "./fixtures/pipelines/mini.ts";

/**
 * A stage sent to a provider's batch API goes out as one provider batch (up
 * to the chunk size), however many loops and processes claim it, and in
 * `auto` mode the whole run follows one decision.
 */
const auto = definePipeline({ ...mini, id: "mini-auto", stages: mini.stages.map((s) => (isLlmStage(s) ? { ...s, provider: "openai" as const, mode: "auto" as const } : s)) });
const texts = ["invoice charged twice", "the app crashes on export", "hello there", "refund my invoice please", "error when I log in"];
const items = Array.from({ length: 400 }, (_, i) => ({ id: `b${String(i).padStart(4, "0")}`, text: `${texts[i % texts.length]} #${i}` }));

let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
});
afterAll(async () => {
  await sim?.close();
});

function providers(): ProviderSet {
  const openai = createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, env: {} });
  return { defaultProvider: "openai", get: () => openai, cost: costOf };
}

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`a batch stage on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await driver.open();
      sim.reset();
    });
    afterEach(async () => {
      await t.drop();
    });

    it("goes out as one provider batch, with no call at full price", async () => {
      const dir = mkdtempSync(join(tmpdir(), "sluice-batch-stage-"));
      const input = join(dir, "items.jsonl");
      writeFileSync(input, items.map((i) => JSON.stringify(i)).join("\n"));
      const options = { batchPollMs: 10, batchPollMaxMs: 50 };
      // On Postgres, two processes share the run (each with its own connections and claim loops).
      const second = t.url ? await openDatabase({ url: t.url }) : undefined;
      try {
        const runs = [runPipeline({ db: t.db, pipeline: auto, providers: providers(), options }, input)];
        if (second) runs.push(runPipeline({ db: second, pipeline: auto, providers: providers(), options }, input));
        const summaries = await Promise.all(runs);
        expect(new Set(summaries.map((s) => s.runId)).size).toBe(1);
        const classify = summaries[0]!.stages.find((s) => s.id === "classify")!;
        expect(classify.providerCalls).toBe(items.length);
        expect(classify.batchCalls).toBe(items.length);
        const stats = sim.stats();
        expect(stats.batches.created).toBe(1);
        expect(stats.realtimeCalls).toBe(0);
      } finally {
        await second?.close();
      }
    });

    it("records the first decision on a stage's mode; every later one follows it", async () => {
      const run = await runPipeline({ db: t.db, pipeline: mini, providers: providers() }, writeOne());
      expect(await settledStageMode(t.db, run.runId, "classify")).toBeUndefined();
      const decided = await Promise.all([settleStageMode(t.db, run.runId, "classify", "realtime"), settleStageMode(t.db, run.runId, "classify", "batch")]);
      expect(decided[0].mode).toBe(decided[1].mode);
      // Exactly one of the two settled it (and says so in the log).
      expect(decided.filter((d) => d.settledHere)).toHaveLength(1);
      const mode = decided[0].mode;
      expect(await settleStageMode(t.db, run.runId, "classify", mode === "batch" ? "realtime" : "batch")).toEqual({ mode, settledHere: false });
      expect(await settledStageMode(t.db, run.runId, "classify")).toBe(mode);
      expect(await settleStageMode(t.db, run.runId, "extract", "batch")).toEqual({ mode: "batch", settledHere: true });
    });
  });
}

function writeOne(): string {
  const dir = mkdtempSync(join(tmpdir(), "sluice-batch-stage-"));
  const input = join(dir, "items.jsonl");
  writeFileSync(input, `${JSON.stringify({ id: "x1", text: "invoice charged twice" })}\n`);
  return input;
}
