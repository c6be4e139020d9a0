import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { definePipeline } from "../src/core/define.ts";
import { isLlmStage } from "../src/core/types.ts";
import type { ProviderSet } from "../src/engine/context.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { requireRun } from "../src/store/runs.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import mini from "./fixtures/pipelines/mini.ts";
import { simulatedProviders } from "./fixtures/simulated.ts";

/**
 * A deadline decides an `auto` stage's mode. The provider's batches came
 * back fast before, so the stage goes by batch; this time the simulator's
 * batch is slow, so at the cutoff the batch is cancelled, what it
 * finished is kept at the batch price and the rest goes out realtime, and
 * the run ends before its deadline with no request paid twice.
 */
const auto = definePipeline({ ...mini, id: "mini-deadline", stages: mini.stages.map((s) => (isLlmStage(s) ? { ...s, provider: "openai" as const, mode: "auto" as const } : s)) });
const texts = ["invoice charged twice", "the app crashes on export", "hello there", "refund my invoice please", "error when I log in"];
/** Few enough calls to go realtime, a batch's worth, and the run with a deadline: each with texts of its own, so nothing is reused. */
const inputs = { warmup: 5, fast: 40, late: 60 };
/** Generous for a slow machine: the batch is cut 5 s before the deadline, and the realtime rest takes well under a second here. */
const DEADLINE = "30s";
const options = { batchPollMs: 20, batchPollMaxMs: 1_000, autoBatchMinItems: 20 };

let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
});
afterAll(async () => {
  await sim?.close();
});

const providers = (): ProviderSet => simulatedProviders(sim, { endpointOf: () => "openai@simulator" });

function writeItems(name: keyof typeof inputs): string {
  const path = join(mkdtempSync(join(tmpdir(), "sluice-deadline-")), `${name}.jsonl`);
  const rows = Array.from({ length: inputs[name] }, (_, i) => ({ id: `${name}-${String(i).padStart(3, "0")}`, text: `${texts[i % texts.length]} (${name} #${i})` }));
  writeFileSync(path, rows.map((r) => JSON.stringify(r)).join("\n"));
  return path;
}

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`a deadline on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await driver.open();
      sim.reset();
      sim.configure({ batch: { processingMs: 0, pollsToComplete: 0 } });
    });
    afterEach(async () => {
      await t.drop();
    });

    it("moves a late batch's unfinished requests to realtime and finishes before it, paying nothing twice", async () => {
      const run = (input: string, deadline?: string) => runPipeline({ db: t.db, pipeline: auto, providers: providers(), options, deadline }, input);
      // History: realtime latency (too few calls for a batch), then a batch that comes back at once.
      const warmup = await run(writeItems("warmup"));
      expect(warmup.stages.find((s) => s.id === "classify")!.batchCalls).toBe(0);
      const fast = await run(writeItems("fast"));
      expect(fast.stages.find((s) => s.id === "classify")!.batchCalls).toBe(inputs.fast);

      // This time a batch moves a 150th of the way per poll: with polls at most a second apart, a few
      // are done within the first second, and far from all by the cutoff (25 s in), however fast or slow the machine.
      sim.reset();
      sim.configure({ batch: { processingMs: 0, pollsToComplete: 150 } });
      const late = await run(writeItems("late"), DEADLINE);
      const row = await requireRun(t.db, late.runId);
      const deadlineAt = new Date(row.options.deadlineAt as string);
      expect(deadlineAt.getTime() - new Date(row.created_at).getTime()).toBe(30_000);
      expect(late.status).toBe("finished");
      expect(new Date(late.finishedAt!).getTime()).toBeLessThan(deadlineAt.getTime());

      // Every item got its answer, from the batch or realtime.
      const classify = late.stages.find((s) => s.id === "classify")!;
      expect(classify.providerCalls).toBe(inputs.late);
      for (const s of ["failed_retryable", "failed_terminal", "queued", "processing"]) expect(late.items.byStatus[s]).toBeUndefined();
      const stats = sim.stats();
      expect(stats.batches.created).toBe(1);
      expect(stats.batches.cancelled).toBe(1);
      // What the batch finished is paid at the batch price, the rest realtime: the summary and the provider agree on which.
      expect(classify.batchCalls).toBe(stats.batchCalls);
      expect(classify.providerCalls - classify.batchCalls).toBe(stats.realtimeCalls);
      expect(stats.batchCalls).toBeGreaterThan(0);
      expect(stats.realtimeCalls).toBeGreaterThan(0);
      expect(classify.batchSavedUsd).toBeGreaterThan(0);
      // Nothing twice.
      expect(stats.billed).toBe(inputs.late);
      expect(Object.values(stats.billedByRequestHash).every((n) => n === 1)).toBe(true);
      expect(stats.billedAgainHow).toEqual({});

      // The mode chosen, and why, is in the run.
      const modes = row.options.stageModes as Record<string, string>;
      const why = (row.options.stageModeWhy as Record<string, string>).classify!;
      expect(modes.classify).toBe("realtime");
      expect(why).toMatch(/^60 calls; the slowest of openai@simulator's last 1 batch took \d+(ms|s), within the .* before the batch would be cut for the deadline/);
      expect(why).toMatch(new RegExp(`then openai batch \\S+ still running at its cutoff .*, cancelled: ${stats.batchCalls} of 60 answers kept at the batch price, ${stats.realtimeCalls} sent realtime$`));
    }, 300_000);

    it("goes realtime at once when no batch of the provider was seen to end within the time left", async () => {
      const late = await runPipeline({ db: t.db, pipeline: auto, providers: providers(), options, deadline: "2h" }, writeItems("late"));
      const row = await requireRun(t.db, late.runId);
      expect((row.options.stageModes as Record<string, string>).classify).toBe("realtime");
      expect((row.options.stageModeWhy as Record<string, string>).classify).toMatch(/no batch of openai@simulator seen to end, so its 24h window, too long for the \S+ a batch would have before the deadline/);
      expect(sim.stats().batches.created).toBe(0);
      expect(late.stages.find((s) => s.id === "classify")!.batchCalls).toBe(0);
    }, 180_000);
  });
}
