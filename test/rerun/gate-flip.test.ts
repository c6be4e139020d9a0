import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatDiff } from "../../src/cli/diff.ts";
import { rerunPipeline } from "../../src/cli/rerun.ts";
import { diffRuns } from "../../src/inspect/diff.ts";
import type { RunSummary } from "../../src/inspect/summary.ts";
import { runPipeline } from "../../src/runners/local/index.ts";
import { memoryDatabase, type TestDatabase } from "../../src/testing/databases.ts";
import { ACTIONABLE } from "../../pipelines/ticket-triage.ts";
import { demoSlice } from "../e2e/data.ts";
import { activeData, CLASSIFY_USER_V2, demo, pricedInProcess, stageRows, targetRows, variant, type StageRow } from "./helpers.ts";

/**
 * A changed classify prompt moves tickets across extract's gate in both
 * directions. Newly gated in: extracted and committed. Newly gated out: no
 * longer committed, and the target row says `withdrawn`.
 */
const input = demoSlice(300);
const classifyV2 = variant(demo, "classify", { prompt: { user: CLASSIFY_USER_V2 } });
const actionable = (row: StageRow | undefined) => ACTIONABLE.includes((row?.output as { category?: string } | null)?.category as never);

describe("rerun --stage classify when gate results flip", () => {
  let t: TestDatabase;
  let base: RunSummary;
  let rerun: RunSummary;
  const llm = pricedInProcess();
  beforeAll(async () => {
    t = await memoryDatabase();
    base = await runPipeline({ db: t.db, pipeline: demo, providers: llm.providers }, input);
  });
  afterAll(async () => {
    await t?.drop();
  });

  it("computes newly gated-in items, withdraws newly gated-out ones, and matches a from-scratch run", async () => {
    const before = { classify: await stageRows(t.db, base.runId, "classify"), target: await targetRows(t.db) };
    const calls = llm.calls();
    rerun = (await rerunPipeline({ db: t.db, pipeline: classifyV2, providers: llm.providers }, { stage: "classify" })).summary;
    const classify = await stageRows(t.db, rerun.runId, "classify");
    const extract = await stageRows(t.db, rerun.runId, "extract");
    const target = await targetRows(t.db);

    const ids = [...classify.keys()];
    const gatedIn = ids.filter((id) => !actionable(before.classify.get(id)) && actionable(classify.get(id)));
    const gatedOut = ids.filter((id) => actionable(before.classify.get(id)) && !actionable(classify.get(id)));
    expect(gatedIn.length).toBeGreaterThan(10);
    expect(gatedOut.length).toBeGreaterThan(0);

    // classify is computed for every item that reaches it (a ticket whose text repeats an
    // earlier one's is answered by the request cache); filter is reused.
    const [filterSummary, classifySummary] = rerun.stages;
    expect(filterSummary!.providerCalls).toBe(0);
    expect(filterSummary!.reused).toBe(filterSummary!.processed);
    expect(classifySummary!.providerCalls + classifySummary!.reused).toBe(classifySummary!.processed);
    expect(classifySummary!.reused).toBeLessThan(5);
    expect(llm.calls() - calls).toBe(rerun.stages[1]!.providerCalls + rerun.stages[2]!.providerCalls);

    // Newly gated in: extract ran for them (no earlier output to reuse) and the target has them.
    for (const id of gatedIn) {
      expect(extract.get(id)).toMatchObject({ status: "succeeded_unvalidated", reused: false });
      const row = target.get(id);
      if (row) {
        expect(row.status).toBe("active");
        expect(row.data.category).toBe((classify.get(id)!.output as { category: string }).category);
        expect(row.runId).toBe(rerun.runId);
      }
    }
    expect(gatedIn.filter((id) => target.get(id)?.status === "active").length).toBeGreaterThan(10);

    // Newly gated out: extract skipped them, and rows they had in the target are withdrawn, not deleted.
    const withdrawnBefore = gatedOut.filter((id) => before.target.get(id)?.status === "active");
    expect(withdrawnBefore.length).toBeGreaterThan(0);
    for (const id of gatedOut) expect(extract.get(id)!.status).toBe("gated_out");
    for (const id of withdrawnBefore) {
      expect(target.get(id)).toMatchObject({ status: "withdrawn", runId: rerun.runId, data: before.target.get(id)!.data });
    }
    // Nothing else was withdrawn.
    const withdrawn = [...target].filter(([, r]) => r.status === "withdrawn").map(([k]) => k);
    expect(withdrawn.sort()).toEqual(withdrawnBefore.sort());

    // The same definition from scratch commits exactly the rows that are active now.
    const fresh = await memoryDatabase();
    try {
      await runPipeline({ db: fresh.db, pipeline: classifyV2, providers: pricedInProcess().providers }, input);
      expect(activeData(target)).toEqual(activeData(await targetRows(fresh.db)));
    } finally {
      await fresh.drop();
    }
  });

  it("diff reports the gate flips, the label moves and the changed final states", async () => {
    const diff = await diffRuns(t.db, base.runId, rerun.runId, { sample: 3 });
    const extract = diff.stages.find((s) => s.id === "extract")!;
    const classify = diff.stages.find((s) => s.id === "classify")!;
    const before = await stageRows(t.db, base.runId, "classify");
    const after = await stageRows(t.db, rerun.runId, "classify");
    const ids = [...after.keys()];
    const gatedIn = ids.filter((id) => !actionable(before.get(id)) && actionable(after.get(id))).length;
    const gatedOut = ids.filter((id) => actionable(before.get(id)) && !actionable(after.get(id))).length;
    expect(extract.gate).toEqual({ "gated_out→reached": gatedIn, "reached→gated_out": gatedOut });
    expect(extract.gateChanged).toBe(gatedIn + gatedOut);

    const category = classify.labels!.find((l) => l.field === "category")!;
    const moved = ids.filter((id) => (before.get(id)!.output as { category: string }).category !== (after.get(id)!.output as { category: string }).category).length;
    expect(category.compared).toBe(ids.length);
    expect(category.same).toBe(ids.length - moved);
    expect(category.table.reduce((n, r) => n + r.count, 0)).toBe(moved);
    expect(category.table.every((r) => r.from !== r.to)).toBe(true);
    expect(classify.sample).toHaveLength(3);
    expect(classify.sample.every((c) => c.before && c.after)).toBe(true);

    expect(diff.final.changed).toBeGreaterThanOrEqual(gatedOut);
    expect(diff.final.transitions["committed→gated_out"]).toBeGreaterThan(0);
    const text = formatDiff(diff);
    expect(text).toContain(`extract gate: gated_out→reached ${gatedIn}, reached→gated_out ${gatedOut}`);
    expect(text).toMatch(/classify\.category: \d+\/\d+ unchanged/);
  });

  it("diff compares only the items both runs have: an item one run never had did not change", async () => {
    // The next increment of a source: the same 300 tickets and 50 more, through the unchanged pipeline.
    const next = await runPipeline({ db: t.db, pipeline: demo, providers: llm.providers }, demoSlice(350));
    const diff = await diffRuns(t.db, base.runId, next.runId);
    expect(diff.items.b - diff.items.common).toBeGreaterThan(40);
    expect(diff.items.common).toBe(diff.items.a);
    expect(diff.final).toEqual({ changed: 0, transitions: {} });
    for (const s of diff.stages) expect([s.id, s.outputChanged, s.gateChanged, s.stateChanged]).toEqual([s.id, 0, 0, 0]);
    expect(formatDiff(diff).split("\n")[0]).toMatch(new RegExp(`${diff.items.common} in both \\(the ${diff.items.b - diff.items.common} in one run only are not compared\\)$`));
  });
});
