import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildRunReport, reasonKind, type RunReport } from "../src/inspect/report.ts";
import { summarizeRun } from "../src/inspect/summary.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { costOf } from "../src/providers/prices.ts";
import { reportDocument } from "../src/report/page.ts";
import { runPipelineForTest, singleProvider, testDrivers, type TestDatabase, type TestRun } from "../src/testing/index.ts";
import pipeline from "../pipelines/ticket-triage.ts";
import { demoSlice } from "./e2e/data.ts";

/** Every `data-metric` figure of a page, by its path in the run summary. */
function metrics(page: string): Map<string, { value: string; text: string }> {
  const out = new Map<string, { value: string; text: string }>();
  for (const m of page.matchAll(/<span data-metric="([^"]+)" data-value="([^"]+)">([^<]*)<\/span>/g)) out.set(m[1]!, { value: m[2]!, text: m[3]! });
  return out;
}

/** The value at a `data-metric` path (`stages.extract.costUsd`: the stage with that id). */
function at(summary: unknown, path: string): unknown {
  let node: any = summary;
  const parts = path.split(".");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part !== "stages") node = node?.[part];
    else {
      const id = parts[++i];
      node = node.stages.find((s: { id: string }) => s.id === id);
    }
  }
  return node;
}

describe("reasonKind", () => {
  it("counts messages that differ only in numbers and quoted values together", () => {
    expect(reasonKind("item is 292,411 bytes, over the 262,144-byte limit")).toBe(reasonKind("item is 301,002 bytes, over the 262,144-byte limit"));
    expect(reasonKind('duplicate id "T-1" with content different from line 4')).toBe("duplicate id … with content different from line …");
    expect(reasonKind("HTTP 500: upstream failed")).not.toBe(reasonKind("HTTP 500: content policy"));
  });
});

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`run report on ${driver.name}${driver.skip ? ` (${driver.skip})` : ""}`, () => {
    let store: TestDatabase;
    let run: TestRun;
    let report: RunReport;
    beforeAll(async () => {
      store = await driver.open();
      // Priced like the real models, so the report has costs, tokens and gate savings to show.
      const providers = singleProvider(createInProcessProvider(), (model, usage, mode) => costOf(model, usage, mode));
      run = await runPipelineForTest(pipeline, { input: demoSlice(120), db: store.db, providers });
      report = await buildRunReport(store.db, run.summary.runId);
    }, 120_000);
    afterAll(async () => {
      await run?.close();
      await store?.drop();
    });

    it("adds up to the run summary", async () => {
      const summary = await summarizeRun(store.db, run.summary.runId);
      expect(report.summary).toEqual(summary);
      const f = report.funnel;
      expect(f.rowsRead).toBe(summary.items.total);
      expect(f.items + f.quarantined + f.deduplicated).toBe(f.rowsRead);
      expect(f.committed).toBe(summary.items.byStatus.committed);
      // Each stage's rows are accounted for, and what passes one stage enters the next (gates included).
      for (const [i, s] of f.stages.entries()) {
        expect(s.passed + s.gatedOut + s.review + s.failed + s.pending).toBe(s.entered);
        if (i > 0) expect(s.entered).toBe(f.stages[i - 1]!.passed);
      }
      expect(f.stages[0]!.entered).toBe(f.items);
      // Cost by model sums to each stage's cost.
      for (const s of summary.stages) {
        const byModel = report.costs.filter((c) => c.stage === s.id);
        expect(byModel.reduce((a, c) => a + c.costUsd, 0)).toBeCloseTo(s.costUsd, 5);
        expect(byModel.reduce((a, c) => a + c.calls, 0)).toBe(s.providerCalls);
      }
      expect(summary.costUsd).toBeGreaterThan(0);
      expect(report.savings.gateUsd).toBe(summary.savings.gateUsd);
      expect(report.timings.every((t) => t.firstS !== null && t.lastS! >= t.firstS!)).toBe(true);
    });

    it("renders one self-contained document whose figures are the summary's", () => {
      const page = reportDocument(report);
      expect(page).not.toMatch(/<script|<link|src="http|href="http|@import|url\(/i);
      // Funnel, cost, savings, tokens and time charts at least; Plot draws them as SVG.
      expect((page.match(/<svg/g) ?? []).length).toBeGreaterThanOrEqual(5);
      const found = metrics(page);
      expect(found.size).toBeGreaterThan(run.summary.stages.length * 8);
      for (const [path, { value }] of found) expect(Number(value), path).toBe(at(run.summary, path));
      for (const state of Object.keys(run.summary.items.byStatus)) expect(found.has(`items.byStatus.${state}`), state).toBe(true);
      expect(found.get("costUsd")!.text).toBe(`$${run.summary.costUsd.toFixed(6).replace(/0+$/, "")}`);
    });

    it("escapes what comes from the data", () => {
      const hostile = { ...report, run: { ...report.run, inputPath: "<img src=x onerror=alert(1)>.csv" } };
      const page = reportDocument(hostile);
      expect(page).not.toContain("<img src=x");
      expect(page).toContain("&lt;img src=x onerror=alert(1)&gt;.csv");
    });
  });
}
