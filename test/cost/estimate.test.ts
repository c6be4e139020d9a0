import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { estimateCli, estimateRerunCli, formatEstimate, readItems, type EstimateResult } from "../../src/cli/estimate.ts";
import { rerunCli } from "../../src/cli/rerun.ts";
import { runCli } from "../../src/cli/run.ts";
import type { CostEstimate } from "../../src/inspect/estimate.ts";
import { freshPostgres, type TestDatabase } from "../../src/testing/databases.ts";
import { writeMessyCsv } from "../fixtures/messy.ts";
import { cliEnv, lastJson, ROOT, runCli as e2eCli, tempDataDir } from "../e2e/cli.ts";
import { demoSlice } from "../e2e/data.ts";
import { demo, EXTRACT_SYSTEM_V2, writeDemoVariant } from "../rerun/helpers.ts";

/**
 * `sluice estimate` against what the run then costs, through the CLI's own
 * functions (the in-process responder answers, as `SLUICE_PROVIDER=inprocess`
 * does), on both drivers: the actual cost falls inside the printed range and
 * the midpoint is within 15% of it; what is stored already costs nothing.
 */
const quiet = { json: true };

function expectWithin(est: CostEstimate, actual: number, tolerance?: number): void {
  expect(actual).toBeGreaterThanOrEqual(est.costUsd.low - 1e-6);
  expect(actual).toBeLessThanOrEqual(est.costUsd.high + 1e-6);
  if (tolerance !== undefined) expect(Math.abs(est.costUsd.mid - actual) / actual).toBeLessThanOrEqual(tolerance);
}

const drivers: { name: string; skip?: string; env: () => Promise<{ env: NodeJS.ProcessEnv; drop(): Promise<void> }> }[] = [
  { name: "pglite", env: async () => ({ env: { SLUICE_DATA_DIR: tempDataDir(), DATABASE_URL: "" }, drop: async () => {} }) },
  {
    name: "postgres",
    skip: process.env.DATABASE_URL ? undefined : "DATABASE_URL is not set",
    env: async () => {
      const t: TestDatabase = await freshPostgres(process.env.DATABASE_URL!);
      return { env: { DATABASE_URL: t.url! }, drop: () => t.drop() };
    },
  },
];

for (const driver of drivers) {
  describe.skipIf(driver.skip)(`sluice estimate on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let env: NodeJS.ProcessEnv;
    let drop: () => Promise<void>;
    const slice = demoSlice(300);
    beforeAll(async () => {
      const opened = await driver.env();
      drop = opened.drop;
      env = { ...process.env, OPENAI_API_KEY: "", ANTHROPIC_API_KEY: "", SLUICE_PROVIDER: "inprocess", SLUICE_JOURNAL_DIR: mkdtempSync(join(tmpdir(), "sluice-journal-")), ...opened.env };
    });
    afterAll(async () => {
      await drop?.();
    });

    it("a sample run narrows the range around what the run then costs", async () => {
      const cold = await estimateCli({ pipeline: "ticket-triage", input: slice, env, ...quiet });
      expect(cold.historyRunId).toBeNull();
      expect(cold.notes.join("\n")).toMatch(/no finished run of ticket-triage/);
      // Filters are computed for real, and classify has no gate: its items are known exactly.
      const classify = cold.stages.find((s) => s.id === "classify")!;
      expect(classify.reach.low).toBe(classify.reach.high);

      const sampled: EstimateResult = await estimateCli({ pipeline: "ticket-triage", input: slice, sample: 60, env, ...quiet });
      expect(sampled.sample!.items).toBe(60);
      expect(sampled.historyRunId).toBe(sampled.sample!.runId);
      // The sample's outputs are reused by the full run: they cost nothing more.
      expect(sampled.stages.find((s) => s.id === "classify")!.reused).toBeGreaterThan(40);
      expect(sampled.costUsd.high - sampled.costUsd.low).toBeLessThan(cold.costUsd.high - cold.costUsd.low);

      const run = await runCli({ pipeline: "ticket-triage", input: slice, env, ...quiet });
      expect(run.costUsd).toBeGreaterThan(0);
      expectWithin(cold, run.costUsd);
      expectWithin(sampled, run.costUsd, 0.15);
      expect(formatEstimate(sampled)).toMatch(/^total +\$\d/m);
    });

    it("an input already run, and an unchanged rerun, cost $0", async () => {
      const again = await estimateCli({ pipeline: "ticket-triage", input: slice, env, ...quiet });
      expect(again.costUsd).toEqual({ low: 0, mid: 0, high: 0 });
      expect(again.savedUsd.reuse).toBeGreaterThan(0);
      const rerun = await estimateRerunCli({ pipeline: "ticket-triage", stage: "classify", env, ...quiet });
      expect(rerun.costUsd).toEqual({ low: 0, mid: 0, high: 0 });
      expect(rerun.source).toMatch(/^rerun of run_/);
    });

    it("a rerun after a prompt change counts only the stage that changed", async () => {
      const changed = writeDemoVariant("extract", { prompt: { system: EXTRACT_SYSTEM_V2 } });
      const est = await estimateRerunCli({ pipeline: changed, stage: "extract", env, ...quiet });
      expect(est.stages.find((s) => s.id === "classify")!.costUsd.high).toBe(0);
      const extract = est.stages.find((s) => s.id === "extract")!;
      // Classify's answers are stored, so extract's gate and requests are known exactly.
      expect(extract.calls.low).toBe(extract.calls.high);
      const { summary } = { summary: await rerunCli({ pipeline: changed, stage: "extract", env, ...quiet }) };
      expect(summary.stages.find((s) => s.id === "extract")!.providerCalls).toBe(extract.calls.mid);
      expectWithin(est, summary.costUsd, 0.15);
    });
  });
}

describe("sluice estimate on the messy fixture", () => {
  // Seven tickets reach classify; the demo's pass rate at extract's gate would expect nearly four of them to go on where
  // three do. Each ticket's own odds (its words against the demo's tickets that met the gate) bring the midpoint close,
  // also for these short tickets against the demo's long ones, learned from a slice of the demo or from all of it.
  const histories = [
    { name: "a 200-ticket slice of the demo", input: () => demoSlice(200), timeout: 60_000 },
    // About 5,000 tickets run in-process: some ten seconds here, minutes on a slow machine.
    { name: "the whole demo", input: () => join(ROOT, "examples/data/tickets.csv"), timeout: 600_000 },
  ];
  for (const history of histories) {
    it(`brackets what the run costs, with pass rates from an earlier run of ${history.name}`, async () => {
      const env = { ...process.env, OPENAI_API_KEY: "", ANTHROPIC_API_KEY: "", SLUICE_PROVIDER: "inprocess", DATABASE_URL: "", SLUICE_DATA_DIR: tempDataDir() };
      await runCli({ pipeline: "ticket-triage", input: history.input(), env, ...quiet });
      const messy = await writeMessyCsv(mkdtempSync(join(tmpdir(), "sluice-messy-")));
      const est = await estimateCli({ pipeline: "ticket-triage", input: messy.path, env, ...quiet });
      expect(est.items).toBe(messy.expected.items);
      expect(est.notes[0]).toMatch(new RegExp(`^${messy.expected.quarantined + messy.expected.duplicates} rows of the input would be quarantined`));
      const run = await runCli({ pipeline: "ticket-triage", input: messy.path, env, ...quiet });
      expect(est.stages.find((s) => s.id === "extract")!.basis.join("\n")).toMatch(/gate odds per item/);
      expectWithin(est, run.costUsd, 0.15);
    }, history.timeout);
  }
});

describe("sluice estimate --deadline", () => {
  it("prices both plans per stage and says what auto would choose, by the provider's batches seen and the deadline", async () => {
    // The simulator over HTTP (no key, no in-process provider): it has a batch API.
    const env = { ...process.env, OPENAI_API_KEY: "", ANTHROPIC_API_KEY: "", SLUICE_PROVIDER: "", DATABASE_URL: "", SLUICE_DATA_DIR: tempDataDir(), SLUICE_BATCH_POLL_MS: "50", SLUICE_JOURNAL_DIR: mkdtempSync(join(tmpdir(), "sluice-journal-")) };
    const input = demoSlice(1200);
    const extractOf = (est: CostEstimate) => est.stages.find((s) => s.id === "extract")!;

    // No batch of the provider seen yet: its 24 h window does not fit in 6 hours.
    const unseen = await estimateCli({ pipeline: "ticket-triage", input, deadline: "6h", env, ...quiet });
    expect(Date.parse(unseen.deadlineAt!) - Date.now()).toBeGreaterThan(5 * 3_600_000);
    expect(extractOf(unseen).mode!.auto).toMatchObject({ mode: "realtime", why: expect.stringMatching(/no batch of openai@simulator seen to end, so its 24h window, too long/) });
    expect(extractOf(unseen).batchAllowed).toBe(false);
    expect(unseen.plans.batchUsd).toBeCloseTo(unseen.plans.realtimeUsd, 9);

    // A run with no deadline sends extract as a batch, which comes back at once.
    const first = await runCli({ pipeline: "ticket-triage", input: demoSlice(600), env, ...quiet });
    expect(first.stages.find((s) => s.id === "extract")!.batchCalls).toBeGreaterThan(0);

    const roomy = await estimateCli({ pipeline: "ticket-triage", input, deadline: "6h", env, ...quiet });
    const extract = extractOf(roomy);
    expect(extract.mode!.auto).toMatchObject({ mode: "batch", why: expect.stringMatching(/^\d+ calls; the slowest of openai@simulator's last 1 batch took \S+, within the .* before the batch would be cut for the deadline/) });
    expect(extract.batchAllowed).toBe(true);
    expect(extract.costUsd.mid).toBeCloseTo(extract.batchUsd, 9);
    expect(extract.batchUsd).toBeLessThan(extract.realtimeUsd);
    // Classify is realtime whatever the deadline: it has no say in the plans' difference.
    const classify = roomy.stages.find((s) => s.id === "classify")!;
    expect(classify.mode!.auto).toBeUndefined();
    expect(roomy.plans.realtimeUsd - roomy.plans.batchUsd).toBeCloseTo(extract.realtimeUsd - extract.batchUsd, 9);
    const text = formatEstimate(roomy);
    expect(text).toMatch(/^plans +\$\S+ all realtime, \$\S+ with batch where a stage and the deadline \(\S+\) allow it$/m);
    expect(text).toMatch(/^ {2}auto chooses batch: \d+ calls; the slowest of openai@simulator's last 1 batch took/m);

    // Five seconds leave a batch no room before its cutoff: realtime, and the batch plan is the realtime one.
    const tight = await estimateCli({ pipeline: "ticket-triage", input, deadline: "5s", env, ...quiet });
    expect(extractOf(tight).mode!.auto).toMatchObject({ mode: "realtime", why: expect.stringMatching(/too long for any batch/) });
    expect(extractOf(tight).costUsd.mid).toBeCloseTo(extractOf(tight).realtimeUsd, 9);
    expect(tight.plans.batchUsd).toBeCloseTo(tight.plans.realtimeUsd, 9);
    expect(formatEstimate(tight)).toMatch(/^plans +\$\S+ all realtime; no stage can go by batch before the deadline \(\S+\)$/m);

    // Without a deadline, auto goes by batch for a batch's worth of calls, as a run would.
    const open = await estimateCli({ pipeline: "ticket-triage", input, env, ...quiet });
    expect(open.deadlineAt).toBeUndefined();
    expect(extractOf(open).mode!.auto).toMatchObject({ mode: "batch", why: expect.stringMatching(/calls and no deadline/) });
  }, 300_000);
});

/** A demo CSV as two files: its header, then the first `n` tickets; its header, then the rest. */
function splitRecords(file: string, n: number): [string, string] {
  const [header, ...lines] = readFileSync(file, "utf8").replace(/\n$/, "").split("\n");
  let seen = 0;
  const at = lines.findIndex((l) => /^T-\d{5},/.test(l) && ++seen > n);
  return [`${[header, ...lines.slice(0, at)].join("\n")}\n`, `${[header, ...lines.slice(at)].join("\n")}\n`];
}

describe("sluice estimate of a glob source", () => {
  it("estimates the files its next trigger would read, names a file still being written, and sees a file once read", async () => {
    const project = mkdtempSync(join(tmpdir(), "sluice-glob-estimate-"));
    // The demo pipeline, reading every CSV file dropped in inbox/.
    const pipelineFile = join(project, "inbox-triage.mts");
    writeFileSync(
      pipelineFile,
      `import demo from ${JSON.stringify(join(ROOT, "pipelines", "ticket-triage.ts"))};
import { definePipeline } from ${JSON.stringify(join(ROOT, "src", "core", "define.ts"))};
export default definePipeline({ ...demo, id: "inbox-triage", source: { ...demo.source, glob: "inbox/*.csv" } });
`,
    );
    mkdirSync(join(project, "inbox"));
    const still = (name: string) => utimesSync(join(project, "inbox", name), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    // Tickets 1-40 and 41-65 of the demo: no ticket in both.
    const [first, second] = splitRecords(demoSlice(65), 40);
    writeFileSync(join(project, "inbox", "a.csv"), first);
    writeFileSync(join(project, "inbox", "b.csv"), second);
    // And a file with nothing in it, which a trigger skips.
    writeFileSync(join(project, "inbox", "empty.csv"), "");
    for (const name of ["a.csv", "b.csv", "empty.csv"]) still(name);
    const env = cliEnv({ SLUICE_PROVIDER: "inprocess", SLUICE_DATA_DIR: join(project, ".sluice", "pglite") });
    const items = async (file: string) => (await readItems(file, demo)).items.length;
    const [inA, inB] = [await items(join(project, "inbox", "a.csv")), await items(join(project, "inbox", "b.csv"))];

    const both = await e2eCli(["estimate", pipelineFile, "--json"], env, project);
    expect(both.code, both.stderr).toBe(0);
    const est = lastJson<CostEstimate>(both.stdout);
    expect(est.source).toBe("3 unread files matching inbox/*.csv (inbox/a.csv, inbox/b.csv, inbox/empty.csv)");
    expect(est.items).toBe(inA + inB);
    expect(est.notes).toContainEqual(expect.stringMatching(/^inbox\/empty\.csv would be skipped, as a trigger skips it: .*empty\.csv/));
    expect(est.costUsd.mid).toBeGreaterThan(0);
    // A sample is of one file.
    const sample = await e2eCli(["estimate", pipelineFile, "--sample", "5"], env, project);
    expect(sample.code).toBe(1);
    expect(sample.stderr.trim()).toBe("sluice: --sample runs one file, and 3 files matching inbox/*.csv are unread: give one with --input");

    // The trigger reads both (and records the empty one as unreadable); a file just written waits.
    const trigger = await e2eCli(["trigger", pipelineFile, "--json"], env, project);
    expect(trigger.code, trigger.stderr).toBe(0);
    const runs = lastJson<{ runs: { costUsd: number }[] }>(trigger.stdout).runs;
    expect(runs).toHaveLength(2);
    const paid = runs.reduce((a, r) => a + r.costUsd, 0);
    expect(paid).toBeGreaterThanOrEqual(est.costUsd.low - 1e-6);
    expect(paid).toBeLessThanOrEqual(est.costUsd.high + 1e-6);
    copyFileSync(demoSlice(10), join(project, "inbox", "c.csv"));
    // Changed a moment ago however slowly the estimate starts: its time is set a minute ahead.
    utimesSync(join(project, "inbox", "c.csv"), new Date(Date.now() + 60_000), new Date(Date.now() + 60_000));
    const after = lastJson<CostEstimate>((await e2eCli(["estimate", pipelineFile, "--json"], env, project)).stdout);
    expect(after.source).toBe("no unread file matching inbox/*.csv");
    expect(after.items).toBe(0);
    expect(after.costUsd).toEqual({ low: 0, mid: 0, high: 0 });
    expect(after.notes.at(-1)).toMatch(/^inbox\/c\.csv changed \d+\.\d s ago and may still be being written: not counted$/);
  }, 300_000);
});
