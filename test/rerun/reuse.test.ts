import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rerunPipeline } from "../../src/cli/rerun.ts";
import type { RunSummary } from "../../src/inspect/summary.ts";
import { planStages } from "../../src/engine/plan.ts";
import { prepareRerun } from "../../src/engine/rerun.ts";
import { stageVersions, versionOutputs } from "../../src/inspect/versions.ts";
import { resumeRun, runPipeline } from "../../src/runners/local/index.ts";
import { testDrivers, type TestDatabase } from "../../src/testing/databases.ts";
import { demoSlice } from "../e2e/data.ts";
import { activeData, demo, EXTRACT_SYSTEM_V2, pricedInProcess, stageRows, targetRows, variant } from "./helpers.ts";

/**
 * The reuse rule seen from `rerun`: an unchanged definition costs nothing, a
 * reverted prompt finds its old outputs, `only` leaves downstream alone, and a
 * changed upstream stage is refused. Run on every store driver.
 */
const input = demoSlice(200);
const extractV2 = variant(demo, "extract", { prompt: { system: EXTRACT_SYSTEM_V2 } });
const stage = (s: RunSummary, id: string) => s.stages.find((x) => x.id === id)!;

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`rerun and the reuse rule on ${driver.name}`, () => {
    let t: TestDatabase;
    let base: RunSummary;
    const llm = pricedInProcess();
    beforeAll(async () => {
      t = await driver.open();
      base = await runPipeline({ db: t.db, pipeline: demo, providers: llm.providers }, input);
    });
    afterAll(async () => {
      await t?.drop();
    });

    it("makes no provider call when the definition is unchanged, and touches no target row", async () => {
      const target = await targetRows(t.db);
      const callsBefore = llm.calls();
      const { summary, prepared } = await rerunPipeline({ db: t.db, pipeline: demo, providers: llm.providers }, { stage: "extract" });
      expect(llm.calls()).toBe(callsBefore);
      expect(prepared.base.id).toBe(base.runId);
      expect(summary.costUsd).toBe(0);
      for (const s of summary.stages) {
        expect(s.providerCalls).toBe(0);
        expect(s.reused).toBe(s.processed);
      }
      expect(summary.items).toEqual(base.items);
      expect(await targetRows(t.db)).toEqual(target);
    });

    it("reuses the old outputs at zero cost when a changed prompt is reverted", async () => {
      const original = activeData(await targetRows(t.db));
      const reached = stage(base, "extract").processed;
      let calls = llm.calls();
      const changed = (await rerunPipeline({ db: t.db, pipeline: extractV2, providers: llm.providers }, { stage: "extract" })).summary;
      expect(llm.calls() - calls).toBe(reached);
      expect(stage(changed, "extract").costUsd).toBeGreaterThan(0);
      expect(activeData(await targetRows(t.db))).not.toEqual(original);

      calls = llm.calls();
      const reverted = (await rerunPipeline({ db: t.db, pipeline: demo, providers: llm.providers }, { stage: "extract" })).summary;
      expect(llm.calls()).toBe(calls);
      expect(stage(reverted, "extract")).toMatchObject({ processed: reached, reused: reached, providerCalls: 0, costUsd: 0 });
      expect(stage(reverted, "extract").version).toBe(stage(base, "extract").version);
      // The reverted run reads the very output rows the first run made.
      const first = await stageRows(t.db, base.runId, "extract");
      const again = await stageRows(t.db, reverted.runId, "extract");
      for (const [id, row] of again) expect(row.outputHash).toBe(first.get(id)!.outputHash);
      expect(activeData(await targetRows(t.db))).toEqual(original);
    });

    it("keeps every version's outputs queryable and lists the history", async () => {
      const history = await stageVersions(t.db, demo.id, { stage: "extract", pipeline: demo });
      expect(history.map((v) => v.version)).toEqual([stage(base, "extract").version, planStages(extractV2).find((s) => s.id === "extract")!.version]);
      expect(history[0]!.current).toBe(true);
      expect(history[1]!.changes.map((c) => c.part)).toEqual(["prompt.system"]);
      for (const v of history) {
        expect(v.items).toBe(stage(base, "extract").processed);
        const rows = await versionOutputs(t.db, demo.id, "extract", v.version, { limit: 5 });
        expect(rows).toHaveLength(5);
        expect(rows.every((r) => r.output !== null && r.costUsd > 0)).toBe(true);
      }
    });

    it("with only, stops after the named stage and leaves the commit target alone", async () => {
      const target = await targetRows(t.db);
      const calls = llm.calls();
      const { summary } = await rerunPipeline({ db: t.db, pipeline: extractV2, providers: llm.providers }, { stage: "extract", only: true });
      // The changed version's outputs exist from the earlier rerun: still no call.
      expect(llm.calls()).toBe(calls);
      expect(summary.status).toBe("finished");
      expect(stage(summary, "validate").processed).toBe(0);
      expect(stage(summary, "commit").processed).toBe(0);
      expect(summary.items.byStatus.committed).toBeUndefined();
      expect(await targetRows(t.db)).toEqual(target);
      expect((await stageRows(t.db, summary.runId, "commit")).size).toBe(0);
    });

    it("refuses a rerun whose upstream stage changed since the base run", async () => {
      const classifyChanged = variant(demo, "classify", { params: { temperature: 0.5, maxTokens: 50 } });
      await expect(prepareRerun(t.db, classifyChanged, { stage: "extract" })).rejects.toThrow(/^classify \(\w+ → \w+\) changed since run run_\w+ and is upstream of extract: rerun --stage classify instead$/);
      await expect(prepareRerun(t.db, demo, { stage: "nope" })).rejects.toThrow(/no stage "nope"/);
      await expect(prepareRerun(t.db, demo, { stage: "extract", from: "run_missing" })).rejects.toThrow(/no run run_missing/);
    });

    it("reruns from a chosen base run, over exactly its items", async () => {
      const { summary, prepared } = await rerunPipeline({ db: t.db, pipeline: demo, providers: llm.providers }, { stage: "commit", from: base.runId });
      expect(prepared.base.id).toBe(base.runId);
      expect(prepared.run.options).toMatchObject({ mode: "rerun", baseRunId: base.runId, stage: "commit" });
      expect(prepared.run.input_path).toBe(input);
      expect(summary.items).toEqual(base.items);
      expect(summary.stages.reduce((n, s) => n + s.providerCalls, 0)).toBe(0);
    });

    it("continues an interrupted rerun when the same rerun is asked for again", async () => {
      const first = await prepareRerun(t.db, demo, { stage: "validate" });
      const again = await prepareRerun(t.db, demo, { stage: "validate" });
      expect(again).toMatchObject({ continued: true, run: { id: first.run.id } });
      const only = await prepareRerun(t.db, demo, { stage: "validate", only: true });
      expect(only.continued).toBe(false);
      expect(only.run.options.stopAfter).toBe(3);
      for (const id of [first.run.id, only.run.id]) {
        const summary = await resumeRun({ db: t.db, pipeline: demo, providers: llm.providers }, id);
        expect(summary.status).toBe("finished");
        expect(summary.stages.reduce((n, s) => n + s.providerCalls, 0)).toBe(0);
      }
    });
  });
}
