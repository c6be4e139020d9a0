import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TransientError } from "../src/core/errors.ts";
import { definePipeline } from "../src/core/define.ts";
import { isLlmStage } from "../src/core/types.ts";
import type { ProviderSet } from "../src/engine/context.ts";
import { costOf, createProvider, type SluiceProvider, type VendorName } from "../src/providers/index.ts";
import type { BatchApi, CompletionRequest } from "../src/providers/types.ts";
import { resumeRun, runPipeline } from "../src/runners/local/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import mini from "./fixtures/pipelines/mini.ts";

/**
 * A batch is recorded before it is submitted, tagged, so that a submission
 * cut short (its answer lost, or the process stopped while it was on its way)
 * is found at the provider and collected, not paid for a second time; and
 * one that never got there is sent again.
 */
const texts = ["invoice charged twice", "the app crashes on export", "hello there", "refund my invoice please", "error when I log in"];
const items = Array.from({ length: 120 }, (_, i) => ({ id: `s${String(i).padStart(4, "0")}`, text: `${texts[i % texts.length]} #${i}` }));
const options = { batchPollMs: 10, batchPollMaxMs: 50 };

// A simulator per test: a provider account with no batches but this test's.
let sim: Simulator;
let input: string;
beforeAll(() => {
  input = join(mkdtempSync(join(tmpdir(), "sluice-batch-submission-")), "items.jsonl");
  writeFileSync(input, items.map((i) => JSON.stringify(i)).join("\n"));
});
beforeEach(async () => {
  sim = await startSimulator({ port: 0 });
});
afterEach(async () => {
  await sim?.close();
});

function pipelineFor(vendor: VendorName) {
  return definePipeline({ ...mini, id: `mini-submit-${vendor}`, stages: mini.stages.map((s) => (isLlmStage(s) ? { ...s, provider: vendor, mode: "batch" as const } : s)) });
}

function providersWith(vendor: VendorName, submit?: (real: SluiceProvider, requests: CompletionRequest[], options?: { tag?: string }) => Promise<{ batchId: string }>): ProviderSet {
  const real = createProvider({ provider: vendor, baseURL: vendor === "openai" ? sim.openaiBaseURL : sim.anthropicBaseURL, env: {} });
  const api = real.batch;
  const batch: BatchApi = submit
    ? {
        maxRequests: api.maxRequests,
        maxBytes: api.maxBytes,
        submit: (r, o) => submit(real, r, o),
        poll: (id) => api.poll(id),
        results: (id) => api.results(id),
        cancel: (id) => api.cancel(id),
        findSubmitted: (tag, match) => api.findSubmitted!(tag, match),
      }
    : api;
  const provider = { ...real, name: real.name, complete: real.complete.bind(real), batch } as SluiceProvider;
  return { defaultProvider: vendor, get: () => provider, cost: costOf };
}

/** Every request the simulator billed was billed once, and none went out realtime. */
function paidOnce(): void {
  const stats = sim.stats();
  expect(stats.batches.created).toBe(1);
  expect(stats.realtimeCalls).toBe(0);
  expect(Object.values(stats.billedByRequestHash).filter((n) => n > 1)).toEqual([]);
  expect(stats.billed).toBe(items.length);
}

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`a batch submission cut short, on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      await t?.drop();
      t = await driver.open();
    });
    afterAll(async () => {
      await t?.drop();
    });

    for (const vendor of ["openai", "anthropic"] as const) {
      it(`${vendor}: the batch whose creation answer was lost is found and collected, not submitted again`, async () => {
        const providers = providersWith(vendor, async (real, requests, o) => {
          await real.batch.submit(requests, o);
          throw new TransientError("connection reset while creating the batch");
        });
        const summary = await runPipeline({ db: t.db, pipeline: pipelineFor(vendor), providers, options }, input);
        expect(summary.status).toBe("finished");
        expect(summary.stages.find((s) => s.id === "classify")!.batchCalls).toBe(items.length);
        paidOnce();
      });
    }

    it("a run stopped while its batch was being submitted: resume finds that batch and pays nothing again", async () => {
      const stop = new AbortController();
      const providers = providersWith("openai", async (real, requests, o) => {
        await real.batch.submit(requests, o);
        // The process is stopped before the provider's answer is recorded.
        stop.abort(new Error("stopped"));
        throw new Error("stopped");
      });
      const pipeline = pipelineFor("openai");
      let runId = "";
      const events = { runStarted: (run: { id: string }) => void (runId = run.id) };
      const first = await runPipeline({ db: t.db, pipeline, providers, options, signal: stop.signal, events }, input).catch((err: unknown) => err);
      expect(first).toBeInstanceOf(Error);
      expect(sim.stats().batches.created).toBe(1);
      const summary = await resumeRun({ db: t.db, pipeline, providers: providersWith("openai"), options }, runId);
      expect(summary.status).toBe("finished");
      expect(summary.stages.find((s) => s.id === "classify")!.batchCalls).toBe(items.length);
      paidOnce();
    });

    it("a submission that never reached the provider is sent on resume", async () => {
      const stop = new AbortController();
      const providers = providersWith("openai", async () => {
        stop.abort(new Error("stopped"));
        throw new Error("stopped");
      });
      const pipeline = pipelineFor("openai");
      let runId = "";
      const events = { runStarted: (run: { id: string }) => void (runId = run.id) };
      await runPipeline({ db: t.db, pipeline, providers, options, signal: stop.signal, events }, input).catch(() => {});
      expect(sim.stats().batches.created).toBe(0);
      const summary = await resumeRun({ db: t.db, pipeline, providers: providersWith("openai"), options }, runId);
      expect(summary.status).toBe("finished");
      paidOnce();
    });
  });
}
