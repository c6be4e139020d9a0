import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type Page } from "playwright-core";
import { cliEnv, lastJson, ROOT, runCli, tempDataDir } from "./cli.ts";
import { demoSlice } from "./data.ts";
import { startUi } from "./ui.ts";

/**
 * The console and the HTML report in a real browser: headless Chromium (the
 * Debian `chromium` package, or SLUICE_CHROMIUM) driven by playwright-core.
 * A slice of the demo runs through the CLI on a fresh embedded store, with
 * the simulator failing some calls so there are dead letters; then the test
 * walks runs → run → item in `sluice ui`, saving a screenshot of each page
 * under test-output/ui/; walks on to the review queue with `--allow-writes`
 * and approves an item there, which `sluice review list` then shows and
 * `sluice commit` commits; and opens the report file `sluice report` wrote.
 * Both must draw their charts and show the figures `sluice status --json` gives.
 */

const OUT = join(ROOT, "test-output", "ui");
const ROWS = 150;

function chromiumPath(): string | undefined {
  return [process.env.SLUICE_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p): p is string => Boolean(p && existsSync(p)));
}

/** Why Chromium cannot run here, or undefined when it can. */
async function chromiumProblem(): Promise<string | undefined> {
  const path = chromiumPath();
  if (!path) return "no Chromium: apt-get install -y chromium (or set SLUICE_CHROMIUM to its path)";
  try {
    const browser = await chromium.launch({ executablePath: path, args: ["--no-sandbox"], timeout: 60_000 });
    await browser.close();
    return undefined;
  } catch (err) {
    return `Chromium at ${path} does not start: ${(err as Error).message.split("\n")[0]}`;
  }
}

const problem = await chromiumProblem();

/** Every `data-metric` figure on the page: its summary path, exact value and shown text. */
async function metrics(page: Page): Promise<{ path: string; value: number; text: string }[]> {
  return page.$$eval("[data-metric]", (els) => els.map((e) => ({ path: e.getAttribute("data-metric")!, value: Number(e.getAttribute("data-value")), text: e.textContent ?? "" })));
}

function at(summary: any, path: string): unknown {
  const [head, ...rest] = path.split(".");
  if (head === "stages") {
    const [id, key] = rest;
    return summary.stages.find((s: { id: string }) => s.id === id)?.[key!];
  }
  return [head, ...rest].reduce((node, key) => node?.[key!], summary);
}

/** The page shows every figure of the summary it should, each equal to it. */
async function expectSummaryFigures(page: Page, summary: any) {
  const found = await metrics(page);
  for (const m of found) expect(m.value, m.path).toBe(at(summary, m.path));
  const paths = new Set(found.map((m) => m.path));
  const expected = ["items.total", "costUsd", "savings.gateUsd", "savings.batchDiscountUsd", ...Object.keys(summary.items.byStatus).map((k) => `items.byStatus.${k}`)];
  for (const s of summary.stages) for (const k of ["processed", "reused", "gatedOut", "needsReview", "failed", "providerCalls", "inputTokens", "outputTokens", "costUsd"]) expected.push(`stages.${s.id}.${k}`);
  for (const p of expected) expect(paths.has(p), `${p} on the page`).toBe(true);
  expect(found.find((m) => m.path === "items.total")!.text).toBe(summary.items.total.toLocaleString("en-US"));
}

/** Charts drawn: SVG with marks in them, at least the funnel, cost, savings, tokens and time. */
async function expectCharts(page: Page) {
  const charts = await page.$$eval("svg", (svgs) => svgs.map((s) => ({ marks: s.querySelectorAll("rect, path, text").length, width: s.getBoundingClientRect().width })));
  const drawn = charts.filter((c) => c.marks > 5 && c.width > 200);
  expect(drawn.length).toBeGreaterThanOrEqual(5);
}

describe.skipIf(problem)(`the console and the report in Chromium${problem ? ` (skipped: ${problem})` : ""}`, () => {
  let browser: Browser;
  let env: NodeJS.ProcessEnv;
  let summary: any;
  let reportFile: string;

  beforeAll(async () => {
    rmSync(OUT, { recursive: true, force: true });
    mkdirSync(OUT, { recursive: true });
    const data = tempDataDir();
    // The simulator started by the CLI fails some calls, so the run has dead letters and failure classes to show.
    const config = join(data, "..", "sim.json");
    writeFileSync(config, JSON.stringify({ faults: { serverError: 0.05 } }));
    env = cliEnv({ SLUICE_DATA_DIR: data, SLUICE_MAX_ATTEMPTS: "1", SLUICE_SIM_CONFIG: config });
    const run = await runCli(["run", "ticket-triage", "--input", demoSlice(ROWS), "--json"], env);
    expect(run.code, run.stderr).toBe(0);
    const status = await runCli(["status", lastJson(run.stdout).runId, "--json"], env);
    summary = lastJson(status.stdout);
    reportFile = join(OUT, "report.html");
    const report = await runCli(["report", summary.runId, "--out", reportFile], env);
    expect(report.code, report.stderr).toBe(0);
    browser = await chromium.launch({ executablePath: chromiumPath(), args: ["--no-sandbox"] });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
  });

  it("has dead letters to show", () => {
    expect(summary.items.total).toBeGreaterThanOrEqual(ROWS);
    expect(summary.items.byStatus.failed_terminal).toBeGreaterThan(0);
  });

  it("walks runs → run → item in sluice ui, each page drawn and equal to the run summary", async () => {
    const ui = await startUi(env);
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    // No request leaves the console's own origin.
    const foreign: string[] = [];
    page.on("request", (r) => void (r.url().startsWith(ui.url) || foreign.push(r.url())));
    try {
      await page.goto(ui.url);
      expect(new URL(page.url()).pathname).toBe("/runs");
      await page.screenshot({ path: join(OUT, "runs.png"), fullPage: true });
      await page.click(`a[href="/runs/${summary.runId}"]`);
      await page.waitForSelector("h1");
      expect(await page.textContent("h1")).toContain(summary.runId);
      await expectCharts(page);
      await expectSummaryFigures(page, summary);
      await page.screenshot({ path: join(OUT, "run.png"), fullPage: true });

      // From the report's dead letters to one failed item.
      await page.click("#failures ~ table a[href*='/items/']");
      await page.waitForSelector("[data-stage]");
      expect(await page.$$eval(".status.failed_terminal", (e) => e.length)).toBeGreaterThan(0);
      await page.screenshot({ path: join(OUT, "item-failed.png"), fullPage: true });

      // And from the item list to a committed one: its stages, outputs and paid attempts.
      await page.goto(`${ui.url}runs/${summary.runId}/items?status=committed`);
      await page.click("table a[href*='/items/']");
      await page.waitForSelector("[data-stage='commit']");
      const stages = await page.$$eval("[data-stage]", (els) => els.map((e) => e.getAttribute("data-stage")));
      expect(stages).toEqual(summary.stages.map((s: { id: string }) => s.id));
      expect(await page.$$eval("[data-stage] table td", (tds) => tds.some((td) => /\$0\.\d+/.test(td.textContent ?? "")))).toBe(true);
      await page.screenshot({ path: join(OUT, "item.png"), fullPage: true });

      await page.goto(`${ui.url}runs/${summary.runId}/dead-letters`);
      expect(await page.$$eval("table tr", (rows) => rows.length - 1)).toBe(summary.items.byStatus.failed_terminal);
      await page.screenshot({ path: join(OUT, "dead-letters.png"), fullPage: true });
      await page.goto(`${ui.url}pipelines/ticket-triage`);
      await page.screenshot({ path: join(OUT, "pipeline.png"), fullPage: true });
      expect(foreign).toEqual([]);
    } finally {
      await page.close();
      await ui.stop();
    }
  }, 180_000);

  it("walks runs → run → item → review queue with --allow-writes, approves an item in the browser, and the store has the decision", async () => {
    expect(summary.items.byStatus.needs_review, "the slice has items in review").toBeGreaterThan(0);
    const ui = await startUi(env, ["--allow-writes"]);
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const foreign: string[] = [];
    page.on("request", (r) => void (r.url().startsWith(ui.url) || foreign.push(r.url())));
    let approved: string;
    try {
      await page.goto(ui.url);
      await page.click(`a[href="/runs/${summary.runId}"]`);
      await page.waitForSelector("h1");
      // The run's items that wait for review, and one of them.
      await page.goto(`${ui.url}runs/${summary.runId}/items?status=needs_review`);
      await page.click("table a[href*='/items/']");
      await page.waitForSelector("[data-stage]");
      await page.click(`a[href="/runs/${summary.runId}/review"]`);
      await page.waitForSelector("table.queue");
      const waiting = await page.$$eval("table.queue tr td:first-child a", (as) => as.map((a) => a.textContent ?? ""));
      expect(waiting.length).toBe(summary.items.byStatus.needs_review);
      await page.screenshot({ path: join(OUT, "review-queue.png"), fullPage: true });

      await page.click("table.queue tr td:first-child a");
      await page.waitForSelector("form.decide");
      approved = (await page.textContent("h1 .mono"))!;
      expect(waiting).toContain(approved);
      // The review view is the item page's content: input, every stage's output, the attempts.
      expect(await page.$$eval("[data-stage]", (els) => els.length)).toBeGreaterThanOrEqual(4);
      await page.fill("input[name=by]", "e2e-reviewer");
      await page.fill("input[name=note]", "checked in the browser");
      await page.screenshot({ path: join(OUT, "review-item.png"), fullPage: true });
      // A small one for the README.
      await page.setViewportSize({ width: 1100, height: 820 });
      await page.screenshot({ path: join(OUT, "review-readme.png") });

      await Promise.all([page.waitForNavigation(), page.click("button[value=approve]")]);
      expect(await page.textContent(".done")).toContain(`Approved ${approved} (by e2e-reviewer)`);
      expect(await page.textContent(".callout")).toContain(`sluice commit ${summary.runId}`);
      await page.screenshot({ path: join(OUT, "review-approved.png"), fullPage: true });
      expect(foreign).toEqual([]);
    } finally {
      await page.close();
      await ui.stop();
    }
    // The decision is in the store (embedded PGlite: read once the console has let it go).
    const list = await runCli(["review", "list", summary.runId, "--decided", "--json"], env);
    expect(list.code, list.stderr).toBe(0);
    const decided = (lastJson(list.stdout) as { item_id: string; decision: string | null; reviewer: string | null }[]).filter((q) => q.decision);
    expect(decided).toEqual([expect.objectContaining({ item_id: approved, decision: "approve", reviewer: "e2e-reviewer" })]);
    // And `sluice commit` takes it on: the item is committed.
    const commit = await runCli(["commit", summary.runId, "--json"], env);
    expect(commit.code, commit.stderr).toBe(0);
    const after = lastJson(commit.stdout);
    expect(after.items.byStatus.committed).toBe(summary.items.byStatus.committed + 1);
    const shown = await runCli(["review", "show", summary.runId, approved, "--json"], env);
    const stages = (lastJson(shown.stdout) as { stages: { stage_id: string; status: string }[] }).stages;
    expect(stages.find((s) => s.stage_id === "commit")?.status).toBe("committed");
    // The console then shows the decision as taken up, with nothing left to commit.
    const again = await startUi(env);
    const page2 = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    try {
      await page2.goto(`${again.url}runs/${summary.runId}/review`);
      expect(await page2.textContent("p.meta")).toContain("0 decided, not yet committed");
      expect(await page2.textContent("table.queue")).toContain("taken up");
      expect(await page2.$(".callout")).toBeNull();
      await page2.screenshot({ path: join(OUT, "review-committed.png"), fullPage: true });
    } finally {
      await page2.close();
      await again.stop();
    }
  }, 300_000);

  it("opens the report file offline, charts drawn and figures equal to the run summary", async () => {
    const context = await browser.newContext({ offline: true, viewport: { width: 1200, height: 900 } });
    const page = await context.newPage();
    const requests: string[] = [];
    page.on("request", (r) => void requests.push(r.url()));
    try {
      await page.goto(pathToFileURL(reportFile).href);
      await expectCharts(page);
      await expectSummaryFigures(page, summary);
      expect(await page.$$("script")).toHaveLength(0);
      // The one request is the file itself.
      expect(requests).toEqual([pathToFileURL(reportFile).href]);
      await page.screenshot({ path: join(OUT, "report.png"), fullPage: true });
    } finally {
      await context.close();
    }
  }, 120_000);
});
