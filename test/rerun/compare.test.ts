import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { costReport } from "../../src/inspect/costs.ts";
import { formatCompare } from "../../src/cli/compare.ts";
import { rerunPipeline } from "../../src/cli/rerun.ts";
import { compareStage, sampleItems } from "../../src/inspect/compare.ts";
import type { RunSummary } from "../../src/inspect/summary.ts";
import { runPipeline } from "../../src/runners/local/index.ts";
import { memoryDatabase, type TestDatabase } from "../../src/testing/databases.ts";
import { demoSlice } from "../e2e/data.ts";
import { demo, EXTRACT_SYSTEM_V2, pricedInProcess, stageRows, tableCounts, targetRows, variant } from "./helpers.ts";

/**
 * `compare`: a stage's current definition on a seeded sample of the items that
 * reached it in the last run, judged against that run's outputs, with nothing
 * committed or recorded (the request cache aside).
 */
const input = demoSlice(200);
const extractV2 = variant(demo, "extract", { prompt: { system: EXTRACT_SYSTEM_V2 } });

describe("compare on an evaluation slice", () => {
  let t: TestDatabase;
  let base: RunSummary;
  const llm = pricedInProcess();
  beforeAll(async () => {
    t = await memoryDatabase();
    base = await runPipeline({ db: t.db, pipeline: demo, providers: llm.providers }, input);
  });
  afterAll(async () => {
    await t?.drop();
  });

  it("samples reproducibly, whatever order the ids come in", () => {
    const ids = Array.from({ length: 500 }, (_, i) => `T-${String(i).padStart(5, "0")}`);
    const s = sampleItems(ids, 25, "7");
    expect(s).toHaveLength(25);
    expect(sampleItems([...ids].reverse(), 25, "7")).toEqual(s);
    expect(sampleItems(ids, 25, "8")).not.toEqual(s);
    // A larger sample with the same seed contains the smaller one.
    expect(sampleItems(ids, 50, "7")).toEqual(expect.arrayContaining(s));
  });

  it("agrees fully, at zero cost, when the definition has not changed", async () => {
    const counts = await tableCounts(t.db);
    const calls = llm.calls();
    const r = await compareStage({ db: t.db, pipeline: demo, providers: llm.providers }, { stage: "extract", sample: 20 });
    expect(llm.calls()).toBe(calls);
    expect(r).toMatchObject({ baseRunId: base.runId, sampled: 20, reached: base.stages[2]!.processed, agreement: { compared: 20, equal: 20, rate: 1 }, changed: [] });
    expect(r.after).toMatchObject({ providerCalls: 0, reused: 20, spentUsd: 0, version: r.before.version });
    expect(r.after.costPerItemUsd).toBeCloseTo(r.before.costPerItemUsd, 10);
    expect(await tableCounts(t.db)).toEqual(counts);
  });

  it("runs a changed prompt on the sample, reports agreement, changes and cost, and commits nothing", async () => {
    const counts = await tableCounts(t.db);
    const target = await targetRows(t.db);
    const calls = llm.calls();
    const r = await compareStage({ db: t.db, pipeline: extractV2, providers: llm.providers }, { stage: "extract", sample: 30, seed: "a" });

    expect(llm.calls() - calls).toBe(30);
    expect(r.after).toMatchObject({ providerCalls: 30, reused: 0, items: 30 });
    expect(r.after.version).not.toBe(r.before.version);
    expect(r.before.costPerItemUsd).toBeGreaterThan(0);
    expect(r.after.costPerItemUsd).toBeGreaterThan(0);
    expect(r.after.spentUsd).toBeCloseTo(r.after.costUsd, 10);

    // Agreement and the changed items are consistent with the base run's outputs.
    const baseExtract = await stageRows(t.db, base.runId, "extract");
    expect(r.agreement.compared).toBe(30);
    expect(r.changed).toHaveLength(30 - r.agreement.equal);
    expect(r.changed.length).toBeGreaterThan(0);
    for (const c of r.changed) {
      expect(c.before!.output).toEqual(baseExtract.get(c.itemId)!.output);
      expect(c.after!.output).not.toEqual(c.before!.output);
    }
    const severity = r.labels!.find((l) => l.field === "severity")!;
    expect(severity.compared).toBe(30);
    expect(severity.same).toBeGreaterThanOrEqual(r.agreement.equal);

    // Nothing recorded but the providers' answers in the request cache and what the calls cost; the target untouched.
    expect(await tableCounts(t.db)).toEqual({ ...counts, request_cache: counts.request_cache! + 30, attempts: counts.attempts! + r.after.providerCalls });
    const byRun = await costReport(t.db, "run", { pipeline: demo.id });
    expect(byRun.groups.find((g) => g.key === r.recordedAs)).toMatchObject({ calls: 30, pipeline: demo.id });
    expect(byRun.groups.find((g) => g.key === r.recordedAs)!.costUsd).toBeCloseTo(r.after.spentUsd, 8);
    expect(formatCompare(r)).toContain(`recorded as ${r.recordedAs}`);
    expect(await targetRows(t.db)).toEqual(target);
    expect(formatCompare(r)).toContain(`agreement  ${r.agreement.equal}/30 outputs equal`);

    // The same seed picks the same items, now answered from the cache: the same verdict, free.
    const again = await compareStage({ db: t.db, pipeline: extractV2, providers: llm.providers }, { stage: "extract", sample: 30, seed: "a" });
    expect(again.changed).toEqual(r.changed);
    expect(again.after).toMatchObject({ providerCalls: 0, reused: 30, spentUsd: 0 });
    expect(again.after.costPerItemUsd).toBeCloseTo(r.after.costPerItemUsd, 10);
  });

  it("leaves the sample's answers for the rerun, which then pays only for the rest", async () => {
    const calls = llm.calls();
    const { summary } = await rerunPipeline({ db: t.db, pipeline: extractV2, providers: llm.providers }, { stage: "extract" });
    const extract = summary.stages.find((s) => s.id === "extract")!;
    expect(extract.processed).toBe(base.stages[2]!.processed);
    expect(extract.providerCalls).toBe(extract.processed - 30);
    expect(llm.calls() - calls).toBe(extract.processed - 30);
  });

  it("refuses what it cannot compare", async () => {
    const opts = { db: t.db, pipeline: demo, providers: llm.providers };
    await expect(compareStage(opts, { stage: "commit", sample: 5 })).rejects.toThrow(/commit/);
    await expect(compareStage(opts, { stage: "nope", sample: 5 })).rejects.toThrow(/no stage "nope"/);
    await expect(compareStage(opts, { stage: "extract", sample: 5, from: "run_missing" })).rejects.toThrow(/run_missing/);
  });
});
