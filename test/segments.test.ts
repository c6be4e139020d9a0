import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { definePipeline, defineStage } from "../src/core/define.ts";
import { DEFAULT_OPTIONS, silentLogger, type RunContext } from "../src/engine/context.ts";
import { loadInputs } from "../src/engine/inputs.ts";
import { planStages } from "../src/engine/plan.ts";
import { segmentBarrier } from "../src/engine/drive/barrier.ts";
import { segmentsOf } from "../src/engine/drive/segments.ts";
import { heartbeat } from "../src/store/workers.ts";
import type { CompletionRequest, Provider } from "../src/providers/types.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { runPipelineForTest, singleProvider } from "../src/testing/harness.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import mini from "./fixtures/pipelines/mini.ts";

/**
 * Segments (src/engine/drive/segments.ts): a chunk goes through consecutive stages in
 * memory. What a later stage is given must be exactly what it would read back
 * from the store, and a chunk cut short anywhere must resume like any other work.
 */
const words = ["invoice charged twice", "the app crashes on export", "hello there", "", "refund my invoice please", "error when I log in"];
const items = Array.from({ length: 90 }, (_, i) => ({ id: `s${String(i).padStart(3, "0")}`, text: `${words[i % words.length]} ${i % 3 === 0 ? "" : `#${i}`}`.trim() }));
// 15 of them are empty (i = 3, 9, 15, ...): the filter drops them. Items with i % 3 === 0 share their text, so some requests repeat.

function writeItems(rows: object[]): { path: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), "sluice-segments-"));
  const path = join(dir, "items.jsonl");
  writeFileSync(path, rows.map((r) => JSON.stringify(r)).join("\n"));
  return { path, dir };
}

function contextFor(t: TestDatabase, runId: string): RunContext {
  return { db: t.db, pipeline: mini, providers: singleProvider(createInProcessProvider()), runId, workerId: "check", plan: planStages(mini), options: DEFAULT_OPTIONS, logger: silentLogger };
}

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`segments on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeAll(async () => {
      t = await driver.open();
    });
    afterAll(async () => {
      await t?.drop();
    });

    it("runs every stage of the pipeline in one segment when no stage uses a batch API", () => {
      const ctx = contextFor(t, "none");
      expect(segmentsOf(ctx, ctx.plan).map((s) => s.map((p) => p.id))).toEqual([["filter", "classify", "shout", "validate", "commit"]]);
    });

    it("gives each later stage the inputs (and input hash) it would read back from the store", async () => {
      const run = await runPipelineForTest(mini, { items, db: t.db, options: { chunkSize: 16 } });
      const ctx = contextFor(t, run.summary.runId);
      let compared = 0;
      for (const stage of ctx.plan) {
        const rows = await t.db.rows<{ item_id: string; input_hash: string }>(sql`
          SELECT item_id, input_hash FROM work WHERE run_id = ${ctx.runId} AND stage_index = ${stage.index} AND input_hash IS NOT NULL ORDER BY item_id`);
        const reread = await loadInputs(ctx, stage, rows.map((r) => r.item_id));
        for (const row of rows) expect(reread.get(row.item_id)?.inputHash, `${stage.id} ${row.item_id}`).toBe(row.input_hash);
        compared += rows.length;
      }
      // Every item was hashed at every stage it reached: all 90 at filter, the 75 it keeps at classify and at shout's gate.
      expect(compared).toBeGreaterThanOrEqual(90 + 75 * 2);
      expect(Object.values(run.summary.items.byStatus).reduce((a, b) => a + b, 0)).toBe(items.length);
      await run.close();
    });

    it("tells progress how many items may yet reach a later stage, a ceiling that comes down to its total", async () => {
      const { path, dir } = writeItems(items);
      const seen = new Map<string, { done: number; total: number; atMost?: number }[]>();
      const events = {
        progress: (stage: { id: string }, done: number, total: number, atMost?: number) => void seen.set(stage.id, [...(seen.get(stage.id) ?? []), { done, total, atMost }]),
      };
      try {
        await runPipeline({ db: t.db, pipeline: mini, providers: singleProvider(createInProcessProvider()), options: { chunkSize: 16 }, events }, path, { fresh: true });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      // The first stage knows its total from the start.
      expect(seen.get("filter")!.every((p) => p.total === items.length && p.atMost === undefined)).toBe(true);
      // classify gets what the filter keeps (75 of 90): up to 90 at first, never more than it gets in the end.
      const classify = seen.get("classify")!;
      expect(classify[0]).toEqual({ done: 0, total: 0, atMost: items.length });
      const ceilings = classify.map((p) => p.atMost).filter((n): n is number => n !== undefined);
      expect(ceilings).toEqual([...ceilings].sort((a, b) => b - a));
      for (const p of classify) if (p.atMost !== undefined) expect(p.atMost).toBeGreaterThanOrEqual(Math.max(p.total, 75));
      expect(classify[classify.length - 1]).toEqual({ done: 75, total: 75, atMost: undefined });
    });

    it("carries an output to the next stage exactly as the store would give it back", async () => {
      // m1's output has a Date, an undefined member and keys out of jsonb's order; m2 reports what it saw.
      const seen = definePipeline({
        id: "carry-form",
        source: { key: "id", schema: { type: "object", required: ["id"], properties: { id: { type: "string" } } } },
        stages: [
          defineStage({ id: "m1", kind: "map", codeVersion: "1", run: () => ({ zeta: "z", at: new Date(0), gone: undefined, a: { y: 2, x: 1 } }) }),
          defineStage({
            id: "m2",
            kind: "map",
            codeVersion: "1",
            run: ({ outputs }) => ({ json: JSON.stringify(outputs.m1), date: (outputs.m1 as { at: unknown }).at instanceof Date, frozen: Object.isFrozen(outputs.m1) }),
          }),
        ],
      });
      const run = await runPipelineForTest(seen, { items: [{ id: "a" }, { id: "b" }], db: t.db });
      const carried = await run.outputs("m2");
      const ctx: RunContext = { ...contextFor(t, run.summary.runId), pipeline: seen, plan: planStages(seen) };
      const reread = await loadInputs(ctx, ctx.plan[1]!, ["a"]);
      const fromStore = (seen.stages[1] as { run: (i: unknown) => unknown }).run(reread.get("a")!.input);
      expect(carried.a).toEqual(fromStore);
      expect(carried.a).toEqual({ json: '{"a":{"x":1,"y":2},"at":"1970-01-01T00:00:00.000Z","zeta":"z"}', date: false, frozen: true });
      await run.close();
    });

    it("resumes a chunk cut short between stages: nothing lost, nothing paid twice, same rows", async () => {
      const reference = await runPipelineForTest(mini, { items, db: t.db, options: { chunkSize: 16 } });
      const expected = await reference.target("mini_out");
      await reference.close();
      await t.db.rows(sql`DELETE FROM stage_outputs`);
      await t.db.rows(sql`DELETE FROM request_cache`);

      // Stop the run in the middle of classify, the second stage of the segment.
      const { path, dir } = writeItems(items);
      const inner = createInProcessProvider();
      const controller = new AbortController();
      const requests = new Set<string>();
      let paid = 0;
      let stopAt = 20;
      const provider: Provider = {
        name: "inprocess",
        async complete(request: CompletionRequest, opts) {
          if (paid === stopAt) controller.abort(new Error("stopped for the test"));
          if (paid >= stopAt) throw controller.signal.reason;
          paid++;
          requests.add(JSON.stringify(request.messages));
          return inner.complete(request, opts);
        },
      };
      const providers = singleProvider(provider);
      try {
        await expect(runPipeline({ db: t.db, pipeline: mini, providers, signal: controller.signal, options: { chunkSize: 16 } }, path)).rejects.toThrow(/stopped for the test/);
        const afterStop = paid;
        stopAt = Infinity;
        const summary = await runPipeline({ db: t.db, pipeline: mini, providers, options: { chunkSize: 16 } }, path);
        expect(summary.items.total).toBe(items.length);
        expect(Object.values(summary.items.byStatus).reduce((a, b) => a + b, 0)).toBe(items.length);
        expect(summary.items.byStatus.processing ?? 0).toBe(0);
        // Nothing was paid for twice: one call per distinct request, across both runs.
        expect(afterStop).toBe(20);
        expect(paid).toBe(requests.size);
        const target = await t.db.rows<{ key: string; data: unknown; status: string }>(sql`SELECT key, data, status FROM mini_out`);
        expect(Object.fromEntries(target.map((r) => [r.key, { data: r.data, status: r.status }]))).toEqual(expected);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

// The barrier is for processes sharing a run on a Postgres server (embedded PGlite has one process).
const postgresDriver = testDrivers().find((d) => d.name === "postgres")!;
describe.skipIf(Boolean(postgresDriver.skip))(`segment barrier on postgres${postgresDriver.skip ? ` (skipped: ${postgresDriver.skip})` : ""}`, () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await postgresDriver.open();
  });
  afterAll(async () => {
    await t?.drop();
  });
  const head = () => planStages(mini)[0]!;
  const worker = async (runId: string, workerId: string, leaseMs = DEFAULT_OPTIONS.leaseMs) => {
    const ctx: RunContext = { ...contextFor(t, runId), workerId, options: { ...DEFAULT_OPTIONS, leaseMs } };
    await heartbeat(t.db, workerId, runId);
    return segmentBarrier(ctx, head());
  };

  it("holds the later stages back until every worker has left the segment's chunks", async () => {
    const a = await worker("barrier-run", "a");
    const b = await worker("barrier-run", "b");
    let release = () => {};
    const inside = new Promise<void>((resolve) => (release = resolve));
    let entered = () => {};
    const hasEntered = new Promise<void>((resolve) => (entered = resolve));
    const events: string[] = [];
    const working = a.within(async () => {
      entered();
      await inside;
      events.push("a left");
    });
    await hasEntered;
    // A second worker in the segment at the same time is not held back.
    await b.within(async () => events.push("b inside"));
    const waiting = b.drained().then(() => events.push("b drained"));
    await new Promise((r) => setTimeout(r, 500));
    expect(events).toEqual(["b inside"]);
    release();
    await Promise.all([working, waiting]);
    expect(events).toEqual(["b inside", "a left", "b drained"]);
  });

  it("does not wait for a worker whose heartbeat is older than the lease (dead, or stopped)", async () => {
    await worker("barrier-dead", "stopped");
    const [marked] = await t.db.rows<{ id: string }>(sql`
      UPDATE workers SET segment = ${head().index}, heartbeat_at = now() - interval '1 hour' WHERE id = 'stopped' RETURNING id`);
    expect(marked?.id).toBe("stopped");
    const other = await worker("barrier-dead", "other");
    await Promise.race([other.drained(), new Promise((_, reject) => setTimeout(() => reject(new Error("drained() waited for a dead worker")), 3_000))]);
  });

  it("stops a worker that finds a lease gone by since its last heartbeat, and says why", async () => {
    const stalled = await worker("barrier-stall", "stalled", 300);
    let seen: AbortSignal | undefined;
    const carrying = stalled.within(async (signal) => {
      seen = signal;
      // The event loop stalls for longer than the lease (as a stopped process would).
      const until = Date.now() + 700;
      while (Date.now() < until);
      for (let i = 0; i < 30 && !signal.aborted; i++) await new Promise((r) => setTimeout(r, 50));
      if (signal.aborted) throw signal.reason;
    });
    await expect(carrying).rejects.toThrow(/stopped carrying chunks: no heartbeat for .* longer than the lease .*sluice resume barrier-stall/);
    expect(seen?.aborted).toBe(true);
    const [row] = await t.db.rows<{ segment: number | null }>(sql`SELECT segment FROM workers WHERE id = 'stalled'`);
    expect(row!.segment).toBeNull();
  });
});
