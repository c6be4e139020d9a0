import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatDrift } from "../../src/cli/drift.ts";
import { chiSquareSurvival, driftReport, gTest, jsDivergence, twoProportionP, welchP } from "../../src/inspect/drift.ts";
import { runPipeline } from "../../src/runners/local/index.ts";
import { testDrivers, type TestDatabase } from "../../src/testing/databases.ts";
import { demoSlice } from "../e2e/data.ts";
import { demo, pricedInProcess, variant } from "../rerun/helpers.ts";
import { CLASSIFY_URGENCY } from "./prompts.ts";

/**
 * Three runs of the demo over the same tickets (a daily job whose input did
 * not change), the third with a classify prompt that asks how urgent the
 * ticket is (`CLASSIFY_URGENCY`): tickets labelled `other` move to how_to,
 * the actionable ones stay. `drift` must flag classify's label shift, and
 * nothing else: not extract's gate, whose pass rate the shift leaves alone,
 * nor the few tokens the longer prompt adds.
 */
let slice: string;
beforeAll(() => {
  slice = demoSlice(300);
});

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`sluice drift on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    const runIds: string[] = [];
    beforeAll(async () => {
      t = await driver.open();
      const { providers } = pricedInProcess();
      const changed = variant(demo, "classify", { prompt: { user: CLASSIFY_URGENCY } });
      for (const pipeline of [demo, demo, changed]) runIds.push((await runPipeline({ db: t.db, pipeline, providers }, slice, { fresh: true })).runId);
    });
    afterAll(async () => {
      await t?.drop();
    });

    it("flags the classify label shift of the changed prompt, and nothing else", async () => {
      const report = await driftReport(t.db, demo.id, { last: 3 });
      expect(report.runs.map((r) => r.id)).toEqual(runIds);
      expect(report.flags.map((f) => `${f.stage} ${f.metric} ${f.from}→${f.to}`)).toEqual([`classify labels.category ${runIds[1]}→${runIds[2]}`]);
      const flag = report.flags[0]!;
      expect(flag.change).toBeGreaterThan(0.05);
      expect(flag.message).toMatch(/other \d+\.\d% → 0\.0%/);
      const classify = report.stages.find((s) => s.id === "classify")!;
      expect(classify.runs[2]!.labels.category!.other ?? 0).toBe(0);
      expect(classify.labelDivergence.category![1]).toBe(0);
      // Extract's gate passes the same share: the shift stayed among labels extract does not take.
      const extract = report.stages.find((s) => s.id === "extract")!;
      expect(Math.abs(extract.runs[2]!.rates.gatePass.value! - extract.runs[1]!.rates.gatePass.value!)).toBeLessThan(0.05);
      // Its requests did not change (the category is what it reads): all answered by the request cache, nothing to compare.
      expect(extract.runs[1]!.perItem.costUsd).toBeGreaterThan(0);
      expect(extract.runs[2]!.perItem.costUsd).toBeNull();
      // The longer prompt costs a few tokens more per item, well under the threshold.
      expect(classify.runs[2]!.perItem.tokens!).toBeGreaterThan(classify.runs[1]!.perItem.tokens!);
      expect(classify.runs[2]!.perItem.tokens! / classify.runs[1]!.perItem.tokens!).toBeLessThan(1.1);
      expect(formatDrift(report)).toContain(`1 change beyond the thresholds:\n  ! ${flag.message}`);
    });

    it("looks at the last runs only, and flags nothing between like runs", async () => {
      const report = await driftReport(t.db, demo.id, { last: 2 });
      expect(report.runs.map((r) => r.id)).toEqual(runIds.slice(1));
      const calm = await driftReport(t.db, demo.id, { last: 3, thresholds: { js: 0.5 } });
      expect(calm.flags).toEqual([]);
      expect((await driftReport(t.db, "no-such-pipeline")).stages).toEqual([]);
    });
  });
}

describe("drift statistics", () => {
  it("match known values", () => {
    expect(chiSquareSurvival(3.841, 1)).toBeCloseTo(0.05, 3);
    expect(chiSquareSurvival(9.21, 2)).toBeCloseTo(0.01, 3);
    expect(chiSquareSurvival(15.086, 5)).toBeCloseTo(0.01, 3);
    expect(chiSquareSurvival(0.5, 10)).toBeCloseTo(0.99999, 4);
    expect(jsDivergence({ a: 5, b: 5 }, { a: 50, b: 50 })).toBe(0);
    expect(jsDivergence({ a: 1 }, { b: 3 })).toBe(1);
    expect(jsDivergence({ a: 3, b: 1 }, { a: 1, b: 3 })).toBeCloseTo(0.1887, 3);
    expect(gTest({ a: 50, b: 50 }, { a: 50, b: 50 })).toBeCloseTo(1, 6);
    expect(gTest({ a: 90, b: 10 }, { a: 10, b: 90 })).toBeLessThan(1e-6);
    expect(twoProportionP(50, 100, 50, 100)).toBeCloseTo(1, 6);
    // z = 2.83 for 60/100 against 40/100.
    expect(twoProportionP(60, 100, 40, 100)).toBeCloseTo(0.0047, 3);
    expect(welchP(10, 2, 100, 10, 2, 100)).toBe(1);
    // z = 1 / sqrt(0.04 + 0.04) = 3.54
    expect(welchP(10, 2, 100, 11, 2, 100)).toBeCloseTo(0.0004, 4);
  });
});
