import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readItems } from "../src/cli/estimate.ts";
import type { ProviderSet } from "../src/engine/context.ts";
import { estimateCost } from "../src/inspect/estimate.ts";
import { resumeRun, runPipeline } from "../src/runners/local/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { summarizeRun } from "../src/inspect/summary.ts";
import { budgetRows, runBudgetKey } from "../src/store/budgets.ts";
import type { Database } from "../src/store/database.ts";
import { openDatabase } from "../src/store/index.ts";
import { testDrivers } from "../src/testing/databases.ts";
import pipeline from "../pipelines/ticket-triage.ts";
import { definePipeline } from "../src/core/define.ts";
import { isLlmStage, type LlmStage, type StageInput } from "../src/core/types.ts";
import { BudgetGate } from "../src/engine/budget.ts";
import { buildRequest } from "../src/engine/llm-call.ts";
import mini from "./fixtures/pipelines/mini.ts";
import { demoSlice } from "./e2e/data.ts";
import { simulatedProviders } from "./fixtures/simulated.ts";

/**
 * A run with a budget of a third of its estimate stops at or under it, its
 * items left queued; `resume` with a larger budget finishes with the same
 * rows as an unbudgeted run, and no request is paid for twice. On Postgres,
 * two processes (two connection pools) share the run and its budget.
 */
let sim: Simulator;
let input: string;
beforeAll(async () => {
  // Latency keeps calls in flight, so the cap is tested with reservations outstanding.
  sim = await startSimulator({ port: 0, config: { latency: { meanMs: 25, jitterMs: 10 } } });
  input = demoSlice(300);
});
afterAll(async () => {
  await sim?.close();
});

const providers = (): ProviderSet => simulatedProviders(sim);

async function paid(db: Database, runId: string): Promise<number> {
  const [row] = await db.rows<{ usd: number }>(sql`SELECT coalesce(sum(cost_usd), 0)::float8 AS usd FROM attempts WHERE run_id = ${runId}`);
  return row!.usd;
}

const rows = (db: Database, runId: string) =>
  db.rows(sql`SELECT w.stage_index, w.item_id, w.status, o.output FROM work w LEFT JOIN stage_outputs o ON o.id = w.output_id WHERE w.run_id = ${runId} ORDER BY w.stage_index, w.item_id`);

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`a run's budget on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    it(`stops at or under a third of the estimate, and resume with more finishes as an unbudgeted run would, paying nothing twice${driver.name === "postgres" ? " (two processes)" : ""}`, async () => {
      const t = await driver.open();
      const extra: Database[] = driver.name === "postgres" ? [await openDatabase({ url: t.url! })] : [];
      const clean = await driver.open();
      try {
        const { items } = await readItems(input, pipeline);
        const estimate = await estimateCost({ db: t.db, pipeline, providers: providers() }, { source: input, items });
        const budget = estimate.costUsd.mid / 3;
        sim.reset();

        const first = await Promise.all([t.db, ...extra].map((db) => runPipeline({ db, pipeline, providers: providers(), budgetUsd: budget }, input)));
        const runId = first[0]!.runId;
        expect(new Set(first.map((s) => s.runId)).size).toBe(1);
        if (extra.length) {
          // Both processes paid for calls: the budget was shared, not one process's.
          const payers = await t.db.rows(sql`SELECT DISTINCT claimed_by FROM work WHERE run_id = ${runId} AND stage_id = 'classify' AND output_id IS NOT NULL`);
          expect(payers.length).toBeGreaterThanOrEqual(2);
        }
        // Read once both processes have stopped (each summarised the run as it left it).
        const stopped = await summarizeRun(t.db, runId);
        expect(stopped.status).toBe("budget_exhausted");
        expect(stopped.budget!.capUsd).toBeCloseTo(budget, 9);
        expect(stopped.budget!.exhausted).toMatch(/stopped at its budget/);
        // At or under the budget: what the store settled, and what every attempt recorded cost.
        const [settled] = await budgetRows(t.db, [runBudgetKey(runId)]);
        expect(settled!.spentUsd).toBeLessThanOrEqual(budget + 1e-9);
        expect(await paid(t.db, runId)).toBeLessThanOrEqual(budget + 1e-9);
        expect(settled!.reservedUsd).toBeCloseTo(0, 9);
        // Nothing dead-lettered for the budget: the rest waits, queued.
        expect(stopped.items.byStatus.failed_terminal ?? 0).toBe(0);
        expect(stopped.items.byStatus.queued ?? 0).toBeGreaterThan(0);

        // The same command again, with no budget of its own, goes on with the run under its cap, and stops again within it.
        const again = await runPipeline({ db: t.db, pipeline, providers: providers() }, input);
        expect(again.runId).toBe(runId);
        expect(again.status).toBe("budget_exhausted");
        expect(again.budget!.capUsd).toBeCloseTo(budget, 9);
        expect(await paid(t.db, runId)).toBeLessThanOrEqual(budget + 1e-9);

        const done = await resumeRun({ db: t.db, pipeline, providers: providers(), budgetUsd: estimate.costUsd.high }, runId);
        expect(done.status).toBe("finished");
        expect(done.budget).toMatchObject({ capUsd: estimate.costUsd.high });
        expect(done.budget!.exhausted).toBeUndefined();
        // Nothing paid for twice across the stop and the resume.
        const billed = sim.stats().billedByRequestHash;
        expect(Object.entries(billed).filter(([, n]) => n > 1)).toEqual([]);
        // A third of the estimate really was short of the run: it did stop before its end.
        const total = await paid(t.db, runId);
        expect(total).toBeGreaterThan(budget);

        const alone = await runPipeline({ db: clean.db, pipeline, providers: providers() }, input);
        expect(alone.budget).toBeUndefined();
        expect(done.items.byStatus).toEqual(alone.items.byStatus);
        expect(await rows(t.db, runId)).toEqual(await rows(clean.db, alone.runId));
        expect(total).toBeCloseTo(await paid(clean.db, alone.runId), 6);
      } finally {
        for (const db of extra) await db.close();
        await clean.drop();
        await t.drop();
      }
    }, 240_000);
  });
}

/** The mini pipeline on the batch API, its answers capped (so a reservation is close to what a call costs). */
const batchy = definePipeline({
  ...mini,
  id: "budget-batchy",
  stages: mini.stages.map((s) => (isLlmStage(s) ? { ...s, mode: "batch" as const, params: { maxTokens: 30 } } : s)),
});
const texts = ["invoice charged twice", "the app crashes on export", "hello there", "refund my invoice please", "error when I log in"];

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`a budget and the batch API on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    it("reserves a whole batch before it is sent, sends what fits, the rest in one more batch once that one is settled, and stops when that is cut too", async () => {
      const { mkdtempSync, writeFileSync } = await import("node:fs");
      const { tmpdir } = await import("node:os");
      const { join } = await import("node:path");
      const path = join(mkdtempSync(join(tmpdir(), "sluice-budget-batch-")), "items.jsonl");
      writeFileSync(path, Array.from({ length: 120 }, (_, i) => JSON.stringify({ id: `b${String(i).padStart(4, "0")}`, text: `${texts[i % texts.length]} #${i}` })).join("\n"));
      const t = await driver.open();
      const short = await driver.open();
      const options = { batchPollMs: 10, batchPollMaxMs: 50 };
      try {
        const ps = providers();
        // What the engine reserves for the batch: each request priced for its longest answer.
        const { items } = await readItems(path, batchy);
        const gate = new BudgetGate({ db: t.db, pipelineId: batchy.id, runId: "none", holder: "none", leaseMs: 1000, providers: ps, logger: { debug() {}, info() {}, warn() {} } });
        const classifyDef = batchy.stages.find((s) => s.id === "classify") as LlmStage;
        const reserved = items.reduce((sum, it) => sum + gate.estimateUsd(buildRequest(classifyDef, { itemId: it.itemId, item: it.item, outputs: {} } as StageInput, it.itemId), "batch"), 0);
        // Three quarters of it: the first batch is cut, and what its answers did cost leaves room for the rest.
        const budget = reserved * 0.75;
        sim.reset();
        const done = await runPipeline({ db: t.db, pipeline: batchy, providers: ps, budgetUsd: budget, options }, path);
        // The answers cost less than reserved: settled, the first batch left room for the rest, sent in one more, and the run finished under the budget.
        expect(done.status).toBe("finished");
        expect(done.stages.find((s) => s.id === "classify")!.batchCalls).toBe(items.length);
        expect(sim.stats().batches.created).toBe(2);
        expect(sim.stats().realtimeCalls).toBe(0);
        const total = await paid(t.db, done.runId);
        expect(total).toBeLessThanOrEqual(budget + 1e-9);
        expect(Object.entries(sim.stats().billedByRequestHash).filter(([, n]) => n > 1)).toEqual([]);

        // A third of it: the second batch is cut too, and the run stops, the rest queued; resume with more sends it.
        sim.reset();
        const tight = reserved / 3;
        const stopped = await runPipeline({ db: short.db, pipeline: batchy, providers: ps, budgetUsd: tight, options }, path);
        expect(stopped.status).toBe("budget_exhausted");
        const classify = stopped.stages.find((s) => s.id === "classify")!;
        expect(classify.batchCalls).toBeGreaterThan(0);
        expect(classify.batchCalls).toBeLessThan(items.length);
        expect(await paid(short.db, stopped.runId)).toBeLessThanOrEqual(tight + 1e-9);
        const [settled] = await budgetRows(short.db, [runBudgetKey(stopped.runId)]);
        expect(settled!.spentUsd).toBeCloseTo(await paid(short.db, stopped.runId), 9);
        expect(settled!.reservedUsd).toBeCloseTo(0, 9);

        const resumed = await resumeRun({ db: short.db, pipeline: batchy, providers: ps, budgetUsd: budget * 10, options }, stopped.runId);
        expect(sim.stats().batches.created).toBe(3);
        expect(resumed.status).toBe("finished");
        expect(resumed.stages.find((s) => s.id === "classify")!.batchCalls).toBe(items.length);
        expect(Object.entries(sim.stats().billedByRequestHash).filter(([, n]) => n > 1)).toEqual([]);
        expect(await paid(short.db, stopped.runId)).toBeCloseTo(total, 6);
      } finally {
        await short.drop();
        await t.drop();
      }
    }, 120_000);
  });
}

describe("a pipeline's budget per day", () => {
  it("is shared by the pipeline's runs of the day: once spent, a run stops, and another run that day pays nothing", async () => {
    const { memoryDatabase, singleProvider, createInProcessProvider } = await import("../src/testing/index.ts");
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const daily = definePipeline({ ...mini, id: "budget-daily", budget: { perDay: 0.0125 } });
    const file = (tag: string) => {
      const path = join(mkdtempSync(join(tmpdir(), "sluice-budget-day-")), `${tag}.jsonl`);
      writeFileSync(path, Array.from({ length: 10 }, (_, i) => JSON.stringify({ id: `${tag}${i}`, text: `${texts[i % texts.length]} ${tag} ${i}` })).join("\n"));
      return path;
    };
    const t = await memoryDatabase();
    try {
      // Every call costs $0.001 (and reserves as much): twelve fit in the day.
      const ps = singleProvider(createInProcessProvider(), () => 0.001);
      const first = await runPipeline({ db: t.db, pipeline: daily, providers: ps }, file("a"));
      expect(first.status).toBe("finished");
      const second = await runPipeline({ db: t.db, pipeline: daily, providers: ps }, file("b"));
      expect(second.status).toBe("budget_exhausted");
      expect(second.stages.find((s) => s.id === "classify")!.providerCalls).toBe(2);
      // No cap of its own: the summary says what it spent, and which budget stopped it.
      expect(second.budget).toMatchObject({ capUsd: null, spentUsd: expect.closeTo(0.002, 9) });
      expect(second.budget!.exhausted).toMatch(new RegExp(`pipeline budget-daily's budget for ${new Date().toISOString().slice(0, 10)} \\(UTC\\): \\$0\\.0120 of \\$0\\.0125 spent`));
      const third = await runPipeline({ db: t.db, pipeline: daily, providers: ps }, file("c"));
      expect(third.status).toBe("budget_exhausted");
      expect(third.stages.find((s) => s.id === "classify")!.providerCalls).toBe(0);
    } finally {
      await t.drop();
    }
  });

  it("is a positive amount, checked when the pipeline is defined", () => {
    expect(() => definePipeline({ ...mini, id: "bad-budget", budget: { perDay: -1 } })).toThrow(/budget.perDay is a positive amount in USD/);
    expect(() => definePipeline({ ...mini, id: "bad-budget", budget: { perWeek: 5 } as never })).toThrow(/budget has perRun and perDay, not perWeek/);
  });
});
