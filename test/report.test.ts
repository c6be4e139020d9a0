import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { definePipeline } from "../src/core/define.ts";
import { isLlmStage } from "../src/core/types.ts";
import { costOf as priceOf, createProvider } from "../src/providers/index.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { costReport } from "../src/inspect/costs.ts";
import { buildRunReport, reasonKind, type RunReport } from "../src/inspect/report.ts";
import { summarizeRun } from "../src/inspect/summary.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { costOf } from "../src/providers/prices.ts";
import { secs } from "../src/report/html.ts";
import { reportDocument } from "../src/report/page.ts";
import { finishRun, reopenRun, requireRun } from "../src/store/runs.ts";
import { runPipelineForTest, singleProvider, testDrivers, type TestDatabase, type TestRun } from "../src/testing/index.ts";
import pipeline from "../pipelines/ticket-triage.ts";
import mini from "./fixtures/pipelines/mini.ts";
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

/** Text as the page escapes it. */
const escaped = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");

/** The row of the report's mode table for one stage. */
function modeRow(page: string, stage: string): string {
  const row = page.match(new RegExp(`<tr data-stage-mode="${stage}">.*?</tr>`, "s"));
  expect(row, `a mode row for ${stage}`).not.toBeNull();
  return row![0];
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
      // Reuse and cache savings are those \`sluice cost --by run\` gives the run.
      const mine = (await costReport(store.db, "run")).groups.find((g) => g.key === run.summary.runId)!;
      expect(report.savings.cache).toEqual({ items: mine.saved.cacheHits, usd: expect.closeTo(mine.saved.cacheUsd, 6) });
      expect(report.savings.reuse).toEqual({ items: mine.saved.reusedItems, usd: expect.closeTo(mine.saved.reuseUsd, 6) });
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

    it("says per model stage whether it went realtime or by batch, and why", () => {
      // Classify is realtime by its definition; extract is auto, on a provider without a batch API.
      expect(report.modes.map((m) => [m.stage, m.mode, m.chosenBy])).toEqual([["classify", "realtime", "definition"], ["extract", "realtime", "auto"]]);
      const extract = report.summary.stages.find((s) => s.id === "extract")!;
      expect(report.modes[1]!.reasons).toEqual([extract.mode!.why]);
      expect(extract.mode!.why).toBe("inprocess has no batch API");
      const row = modeRow(reportDocument(report), "extract");
      expect(row).toContain("<b>realtime</b>");
      expect(row).toContain(`<td>${extract.mode!.why}</td>`);
    });

    it("escapes what comes from the data", () => {
      const hostile = { ...report, run: { ...report.run, inputPath: "<img src=x onerror=alert(1)>.csv" } };
      const page = reportDocument(hostile);
      expect(page).not.toContain("<img src=x");
      expect(page).toContain("&lt;img src=x onerror=alert(1)&gt;.csv");
    });

    it("does not say no attempt failed of a run that stopped with none recorded", () => {
      const clean = reportDocument({ ...report, failures: { ...report.failures, attempts: [] } });
      expect(clean).toContain("No attempt failed.");
      const stopped = reportDocument({ ...report, run: { ...report.run, error: "stage classify stopped: the provider refused the API key" }, failures: { ...report.failures, attempts: [] } });
      expect(stopped).not.toContain("No attempt failed.");
      expect(stopped).toContain("No failed attempt was recorded: the calls cut short when the run stopped are not attempts (stage classify stopped: the provider refused the API key).");
    });

    // Last: it reopens the run the tests above read.
    it("says how long a run took to its first finish when it went on after it (review decisions taken on later)", async () => {
      const finished = await requireRun(store.db, run.summary.runId);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      await reopenRun(store.db, run.summary.runId);
      await finishRun(store.db, run.summary.runId);
      const later = await buildRunReport(store.db, run.summary.runId);
      expect(later.run.firstFinishedAt).toBe(new Date(finished.finished_at!).toISOString());
      expect(Date.parse(later.summary.finishedAt!)).toBeGreaterThan(Date.parse(later.run.firstFinishedAt!));
      const took = (Date.parse(later.run.firstFinishedAt!) - Date.parse(later.summary.startedAt)) / 1000;
      const page = reportDocument(later);
      expect(page).toContain("went on after it finished");
      expect(page).toContain(`took ${secs(took)}`);
    });
  });
}

/**
 * A late batch in the report: the provider's batches came back at once
 * before, so a run with a short deadline sends classify by batch; this time
 * the batch is slow, is cancelled at its cutoff, and the stage switches to
 * realtime. The report shows the choice and the switch, each with its reason.
 */
const auto = definePipeline({ ...mini, id: "mini-report-modes", stages: mini.stages.map((s) => (isLlmStage(s) ? { ...s, provider: "openai" as const, mode: "auto" as const } : s)) });

function items(tag: string, n: number): string {
  const path = join(mkdtempSync(join(tmpdir(), "sluice-report-modes-")), `${tag}.jsonl`);
  writeFileSync(path, Array.from({ length: n }, (_, i) => JSON.stringify({ id: `${tag}-${i}`, text: `invoice charged twice, ${tag} #${i}` })).join("\n"));
  return path;
}

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`the report of a run whose batch was cut for its deadline, on ${driver.name}${driver.skip ? ` (${driver.skip})` : ""}`, () => {
    let sim: Simulator;
    let store: TestDatabase;
    beforeAll(async () => {
      [sim, store] = await Promise.all([startSimulator({ port: 0 }), driver.open()]);
    });
    afterAll(async () => {
      await Promise.all([sim?.close(), store?.drop()]);
    });

    it("shows batch, then realtime, with why it chose batch and why it switched", async () => {
      const openai = createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, env: {} });
      const providers = { defaultProvider: "openai", get: () => openai, cost: priceOf, endpointOf: () => "openai@simulator" };
      const options = { batchPollMs: 20, batchPollMaxMs: 500, autoBatchMinItems: 20 };
      const run = (input: string, deadline?: string) => runPipeline({ db: store.db, pipeline: auto, providers, options, deadline }, input);
      sim.configure({ batch: { processingMs: 0, pollsToComplete: 0 } });
      const warmup = await run(items("warmup", 5));
      await run(items("fast", 30));
      // A batch a hundredth done per poll: polls at most half a second apart reach a few percent by the cutoff, 5 s in.
      sim.configure({ batch: { processingMs: 0, pollsToComplete: 100 } });
      const late = await run(items("late", 40), "10s");
      expect(sim.stats().batches.cancelled).toBe(1);

      const report = await buildRunReport(store.db, late.runId);
      const classify = late.stages.find((s) => s.id === "classify")!;
      const [mode] = report.modes;
      expect(mode).toMatchObject({ stage: "classify", mode: "realtime", chosenBy: "auto", switchedFrom: "batch" });
      expect(mode!.reasons).toHaveLength(2);
      expect(mode!.reasons[0]).toMatch(/^40 calls; the slowest of openai@simulator's last 1 batch took \S+, within the \S+ before the batch would be cut for the deadline/);
      expect(mode!.reasons[1]).toMatch(new RegExp(`^openai batch \\S+ still running at its cutoff for the deadline .*, cancelled: ${classify.batchCalls} of 40 answers kept at the batch price, ${40 - classify.batchCalls} sent realtime$`));
      const row = modeRow(reportDocument(report), "classify");
      expect(row).toContain("<b>batch → realtime</b>");
      expect(row).toContain(`<li>${escaped(mode!.reasons[0]!)}</li>`);
      expect(row).toContain(`<li>${escaped(mode!.reasons[1]!)}</li>`);

      // A run with too few calls for a batch says so, as chosen (auto), with no switch.
      const small = await buildRunReport(store.db, warmup.runId);
      expect(small.modes).toEqual([{ stage: "classify", mode: "realtime", chosenBy: "auto", reasons: ["5 calls to make, fewer than the 20 a batch is worth"] }]);
    }, 180_000);
  });
}
