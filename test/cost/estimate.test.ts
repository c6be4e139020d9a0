import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { estimateCli, estimateRerunCli, formatEstimate, type EstimateResult } from "../../src/cli/estimate.ts";
import { rerunCli } from "../../src/cli/rerun.ts";
import { runCli } from "../../src/cli/run.ts";
import type { CostEstimate } from "../../src/inspect/estimate.ts";
import { freshPostgres, type TestDatabase } from "../../src/testing/databases.ts";
import { writeMessyCsv } from "../fixtures/messy.ts";
import { ROOT, tempDataDir } from "../e2e/cli.ts";
import { demoSlice } from "../e2e/data.ts";
import { EXTRACT_SYSTEM_V2, writeDemoVariant } from "../rerun/helpers.ts";

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
