import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatCostReport, formatItemCost, parseDimensions } from "../../src/cli/cost.ts";
import type { ProviderSet } from "../../src/engine/context.ts";
import { costReport, itemCost } from "../../src/inspect/costs.ts";
import type { RunSummary } from "../../src/inspect/summary.ts";
import { runPipeline } from "../../src/runners/local/index.ts";
import { startSimulator, type Simulator } from "../../src/sim/index.ts";
import { readSource } from "../../src/sources/index.ts";
import { testDrivers, type TestDatabase } from "../../src/testing/databases.ts";
import { demoSlice } from "../e2e/data.ts";
import { demo, variant } from "../rerun/helpers.ts";
import { simulatedProviders } from "../fixtures/simulated.ts";

/**
 * `sluice cost` on both drivers: three runs of the demo with extract sent
 * to the batch API (a first run that pays, a second that reuses everything,
 * a third whose one new ticket repeats an old one word for word), rolled up
 * by every dimension and checked against the runs' own summaries.
 */
const pipeline = variant(demo, "extract", { mode: "batch" });
const options = { batchPollMs: 10, batchPollMaxMs: 50 };
const close = (a: number, b: number) => expect(a).toBeCloseTo(b, 8);
/** Run summaries round to the micro-dollar. */
const closeToSummary = (a: number, b: number) => expect(Math.abs(a - b)).toBeLessThan(1e-6);

let sim: Simulator;
let first: string;
let withCopy: string;
let copied: { id: string };
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
  first = demoSlice(40);
  const items: Record<string, unknown>[] = [];
  for await (const r of readSource(first, demo.source)) if (r.kind === "item") items.push(r.item);
  // A refund ticket sent again under a new id: its classify request is the same, answered by the request cache.
  const refund = items.find((i) => /refund/i.test(`${i.subject} ${i.body}`))!;
  copied = { id: String(refund.id) };
  withCopy = join(mkdtempSync(join(tmpdir(), "sluice-cost-")), "tickets.jsonl");
  writeFileSync(withCopy, [...items, { ...refund, id: "COPY-1" }].map((i) => JSON.stringify(i)).join("\n"));
});
afterAll(async () => {
  await sim?.close();
});

const providers = (): ProviderSet => simulatedProviders(sim);

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`sluice cost on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    let paid: RunSummary;
    let reused: RunSummary;
    let copy: RunSummary;
    beforeAll(async () => {
      t = await driver.open();
      paid = await runPipeline({ db: t.db, pipeline, providers: providers(), options }, first);
      reused = await runPipeline({ db: t.db, pipeline, providers: providers(), options }, first, { fresh: true });
      copy = await runPipeline({ db: t.db, pipeline, providers: providers(), options }, withCopy);
    });
    afterAll(async () => {
      await t?.drop();
    });

    it("adds up to what the runs paid, whichever the dimension", async () => {
      const spent = paid.costUsd + reused.costUsd + copy.costUsd;
      expect(paid.costUsd).toBeGreaterThan(0);
      for (const by of ["pipeline", "stage", "run", "day", "model"] as const) {
        const r = await costReport(t.db, by, { pipeline: demo.id });
        closeToSummary(r.total.costUsd, spent);
        expect(r.total.calls).toBe(paid.stages.concat(reused.stages, copy.stages).reduce((s, x) => s + x.providerCalls, 0));
        expect(formatCostReport(r)).toMatch(new RegExp(`^${by} `));
      }
      const byStage = await costReport(t.db, "stage", { pipeline: demo.id });
      const extract = byStage.groups.find((g) => g.key === `${demo.id}/extract`)!;
      const classify = byStage.groups.find((g) => g.key === `${demo.id}/classify`)!;
      // Batch calls at half the list price: the discount equals what was paid.
      expect(extract.batchCalls).toBe(extract.calls);
      expect(extract.calls).toBeGreaterThan(0);
      close(extract.saved.batchUsd, extract.costUsd);
      close(extract.listCostUsd, 2 * extract.costUsd);
      expect(classify.batchCalls).toBe(0);
      const byModel = await costReport(t.db, "model", { pipeline: demo.id });
      close(byModel.groups.find((g) => g.key === "gpt-4o")!.costUsd, extract.costUsd);
      close(byModel.groups.find((g) => g.key === "gpt-4o-mini")!.costUsd, classify.costUsd);
      const byDay = await costReport(t.db, "day");
      expect(byDay.groups).toHaveLength(1);
      expect(byDay.groups[0]!.key).toBe(new Date().toISOString().slice(0, 10));
      expect((await costReport(t.db, "pipeline", { since: "2999-01-01T00:00:00Z" })).groups).toEqual([]);
      expect((await costReport(t.db, "pipeline", { pipeline: "no-such-pipeline" })).total.costUsd).toBe(0);
    });

    it("counts what reuse and the request cache saved, per run", async () => {
      const byRun = await costReport(t.db, "run", { pipeline: demo.id });
      const run = (id: string) => byRun.groups.find((g) => g.key === id)!;
      expect(run(paid.runId).saved.reusedItems).toBe(0);
      // The second run reused every model output of the first: it paid nothing and saved at least what the first paid.
      expect(run(reused.runId).costUsd).toBe(0);
      const reusedModelItems = reused.stages.filter((s) => s.id === "classify" || s.id === "extract").reduce((s, x) => s + x.reused, 0);
      expect(run(reused.runId).saved.reusedItems).toBe(reusedModelItems);
      expect(run(reused.runId).saved.reuseUsd).toBeGreaterThanOrEqual(paid.costUsd - 1e-6);
      // The copied ticket's requests (classify, then extract) were answered from the cache.
      expect(run(copy.runId).saved.cacheHits).toBe(2);
      expect(run(copy.runId).saved.cacheUsd).toBeGreaterThan(0);
    });

    it("gives one item's cost across runs", async () => {
      const item = await itemCost(t.db, copied.id);
      expect(item.calls.map((c) => c.stage).sort()).toEqual(["classify", "extract"]);
      expect(item.calls.find((c) => c.stage === "extract")!.mode).toBe("batch");
      close(item.batchSavedUsd, item.calls.find((c) => c.stage === "extract")!.costUsd);
      expect(item.stages.filter((s) => s.runId === reused.runId && s.reused).map((s) => s.stage)).toEqual(expect.arrayContaining(["classify", "extract"]));
      close(item.reuseSavedUsd, 2 * item.costUsd);
      expect(formatItemCost(item)).toContain(`item ${copied.id}: 2 provider requests`);
      const copyItem = await itemCost(t.db, "COPY-1");
      expect(copyItem.calls).toEqual([]);
      expect(copyItem.stages.filter((s) => s.reused).map((s) => s.stage).sort()).toEqual(["classify", "extract"]);
      expect((await itemCost(t.db, "T-nope")).calls).toEqual([]);
    });
  });
}

describe("sluice cost arguments", () => {
  it("refuses an unknown dimension in one line", () => {
    expect(parseDimensions("stage,model")).toEqual(["stage", "model"]);
    expect(() => parseDimensions("stage,week")).toThrow(/--by must be a list of pipeline, stage, run, day, model; got "stage,week"/);
  });
});
