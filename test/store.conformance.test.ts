import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { DEFAULT_OPTIONS, silentLogger, type RunContext } from "../src/engine/context.ts";
import { planStages } from "../src/engine/plan.ts";
import { enqueueStage } from "../src/engine/drive/queue.ts";
import { claimChunk, reclaimStale } from "../src/store/work.ts";
import { heartbeat } from "../src/store/workers.ts";
import { adoptOrphanBatches, markBatchCollected, recordBatch, uncollectedBatchesOf, withdrawBatch } from "../src/store/batches.ts";
import { createOrContinueRun, loadSource } from "../src/engine/runs.ts";
import { persistResults } from "../src/engine/persist.ts";
import { ensureTarget } from "../src/store/targets.ts";
import type { CommitStage } from "../src/core/types.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { runPipelineForTest, singleProvider } from "../src/testing/harness.ts";
import { freshPostgres, testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import { openDatabase } from "../src/store/index.ts";
import mini from "./fixtures/pipelines/mini.ts";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * One store suite, run on every driver (embedded PGlite and Postgres through
 * postgres.js). A skipped driver says why.
 */
const items = [
  { id: "a1", text: "I was charged twice on my invoice" },
  { id: "a2", text: "the app crashes with an error on export" },
  { id: "a3", text: "hello there" },
  { id: "a4", text: "" },
  { id: "a5", text: "please check this invoice charge" },
];

function writeItems(rows: object[]): string {
  const dir = mkdtempSync(join(tmpdir(), "sluice-store-"));
  const path = join(dir, "items.jsonl");
  writeFileSync(path, rows.map((r) => JSON.stringify(r)).join("\n"));
  return path;
}

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`store conformance on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeAll(async () => {
      t = await driver.open();
    });
    afterAll(async () => {
      await t?.drop();
    });

    it("applies the committed migrations", async () => {
      const tables = await t.db.rows<{ table_name: string }>(sql`
        SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`);
      expect(tables.map((r) => r.table_name)).toEqual(
        expect.arrayContaining(["attempts", "provider_batches", "rejected_rows", "request_cache", "run_items", "runs", "stage_outputs", "work", "workers"]),
      );
    });

    it("runs a pipeline, counts add up, and a second run reuses every output", async () => {
      const provider = createInProcessProvider();
      const providers = singleProvider(provider);
      const first = await runPipelineForTest(mini, { items, db: t.db, providers });
      expect(first.summary.items.total).toBe(5);
      expect(first.summary.items.byStatus).toEqual({ committed: 3, gated_out: 2 });
      expect(provider.calls).toBe(4); // a4 is dropped by the filter before classify
      const classify = first.summary.stages.find((s) => s.id === "classify")!;
      expect(classify).toMatchObject({ processed: 4, reused: 0, providerCalls: 4 });
      expect(Object.keys(await first.target("mini_out")).sort()).toEqual(["a1", "a2", "a5"]);

      const second = await runPipelineForTest(mini, { items, db: t.db, providers });
      expect(provider.calls).toBe(4);
      for (const stage of second.summary.stages) {
        expect(stage.providerCalls).toBe(0);
        expect(stage.reused).toBe(stage.processed);
      }
      expect(second.summary.items.byStatus).toEqual(first.summary.items.byStatus);
    });

    it("never hands one item to two workers claiming at once", async () => {
      const plan = planStages(mini);
      const many = Array.from({ length: 300 }, (_, i) => ({ id: `c${String(i).padStart(4, "0")}`, text: `invoice ${i}` }));
      const input = writeItems(many);
      const { run } = await createOrContinueRun(t.db, mini, plan, input, { fresh: true });
      const ctx = (workerId: string): RunContext => ({
        db: t.db, pipeline: mini, providers: singleProvider(createInProcessProvider()), runId: run.id, workerId, plan,
        options: DEFAULT_OPTIONS, logger: silentLogger,
      });
      await loadSource(ctx("loader"), input);
      await enqueueStage(ctx("loader"), plan[0]!);
      const chunkSizes: number[] = [];
      const claimed = await Promise.all(
        ["w1", "w2", "w3", "w4"].map(async (w) => {
          const got: string[] = [];
          // Under contention SKIP LOCKED may return a short or empty chunk while
          // rows remain; a worker stops only when nothing is left queued.
          for (;;) {
            const ids = await claimChunk(t.db, { runId: run.id, stageIndex: 0 }, w, 7);
            got.push(...ids);
            chunkSizes.push(ids.length);
            if (ids.length === 0) {
              const left = await t.db.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM work WHERE run_id = ${run.id} AND status = 'queued'`);
              if (left[0]!.n === 0) return got;
            }
          }
        }),
      );
      const all = claimed.flat();
      expect(all.length).toBe(300);
      expect(new Set(all).size).toBe(300);
      // No claim ever exceeds its limit.
      expect(Math.max(...chunkSizes)).toBeLessThanOrEqual(7);

      // A worker with no heartbeat is dead: its claims go back to the queue.
      await heartbeat(t.db, "w1", run.id);
      const reclaimed = await reclaimStale(t.db, run.id, "w1", DEFAULT_OPTIONS.leaseMs);
      expect(reclaimed).toBe(300 - claimed[0]!.length);
      // w2 claims, then loses its lease to w3; its late write must not land.
      await t.db.rows(sql`UPDATE work SET status = 'queued', claimed_by = NULL WHERE run_id = ${run.id}`);
      const mine = await claimChunk(t.db, { runId: run.id, stageIndex: 0 }, "w2", 5);
      expect(mine.length).toBe(5);
      await heartbeat(t.db, "w3", run.id);
      expect(await reclaimStale(t.db, run.id, "w3", DEFAULT_OPTIONS.leaseMs)).toBeGreaterThanOrEqual(5);
      const lost = mine[0]!;
      await persistResults(ctx("w2"), plan[0]!, [{ itemId: lost, status: "succeeded_unvalidated", reused: false, attempts: [], inputHash: "x", output: { value: { keep: true }, status: "succeeded_unvalidated", costUsd: 0, hash: "k" } }]);
      const row = await t.db.rows<{ status: string }>(sql`SELECT status FROM work WHERE run_id = ${run.id} AND stage_index = 0 AND item_id = ${lost}`);
      expect(row[0]!.status).toBe("queued");
    });

    it("writes an item held by a provider batch once, however many times the batch is collected", async () => {
      const plan = planStages(mini);
      const input = writeItems(items);
      const { run } = await createOrContinueRun(t.db, mini, plan, input, { fresh: true });
      const ctx: RunContext = {
        db: t.db, pipeline: mini, providers: singleProvider(createInProcessProvider()), runId: run.id, workerId: "batch:b1", plan,
        options: DEFAULT_OPTIONS, logger: silentLogger,
      };
      await loadSource(ctx, input);
      await enqueueStage(ctx, plan[0]!);
      await t.db.rows(sql`UPDATE work SET status = 'processing', claimed_by = 'batch:b1' WHERE run_id = ${run.id} AND item_id IN ('a1', 'a2')`);
      const attempt = { attempt: 1, provider: "p", model: "m", mode: "batch" as const, requestHash: "h", inputTokens: 1, outputTokens: 1, cachedTokens: 0, costUsd: 0.01, listCostUsd: 0.02, latencyMs: 0 };
      const results = ["a1", "a2"].map((itemId) => ({ itemId, status: "succeeded_unvalidated" as const, reused: false, inputHash: `in-${itemId}`, attempts: [attempt], output: { value: { keep: true }, status: "succeeded_unvalidated" as const, costUsd: 0.01, hash: "k" } }));
      // Two collections of one batch (one after a restart, or two at once): the second writes nothing.
      await Promise.all([persistResults(ctx, plan[0]!, results), persistResults(ctx, plan[0]!, results)]);
      await persistResults(ctx, plan[0]!, results);
      const attempts = await t.db.rows<{ item_id: string; n: number }>(sql`SELECT item_id, count(*)::int AS n FROM attempts WHERE run_id = ${run.id} GROUP BY item_id ORDER BY item_id`);
      expect(attempts).toEqual([{ item_id: "a1", n: 1 }, { item_id: "a2", n: 1 }]);
      const work = await t.db.rows<{ item_id: string; status: string; attempts: number }>(sql`SELECT item_id, status, attempts FROM work WHERE run_id = ${run.id} AND item_id IN ('a1', 'a2') ORDER BY item_id`);
      expect(work).toEqual([{ item_id: "a1", status: "succeeded_unvalidated", attempts: 1 }, { item_id: "a2", status: "succeeded_unvalidated", attempts: 1 }]);
    });

    it("keeps a worker parked at a wait live past its lease, and finds the batches it left uncollected", async () => {
      const plan = planStages(mini);
      const input = writeItems(items);
      const { run } = await createOrContinueRun(t.db, mini, plan, input, { fresh: true });
      const ctx: RunContext = { db: t.db, pipeline: mini, providers: singleProvider(createInProcessProvider()), runId: run.id, workerId: "trg_run_x_a1", plan, options: DEFAULT_OPTIONS, logger: silentLogger };
      await loadSource(ctx, input);
      await enqueueStage(ctx, plan[1]!);
      const at = { runId: run.id, stageIndex: 1 };
      const row = (id: string) => ({ id, batchId: id, provider: "inprocess", status: "submitted", requests: { [`c-${id}`]: { itemId: id === "b1" ? "a1" : "a2" } } });
      await recordBatch(t.db, at, row("b1"), "trg_run_x_a1", ["a1"], undefined);
      await recordBatch(t.db, at, row("b2"), "trg_run_x_a1", ["a2"], undefined);
      await markBatchCollected(t.db, "b2");
      // Beating 60 s ahead (about to be suspended), the worker outlives a 1 s lease: its batch is nobody's to adopt.
      await heartbeat(t.db, "trg_run_x_a1", run.id, 60_000);
      await t.db.rows(sql`UPDATE workers SET heartbeat_at = heartbeat_at - interval '5 seconds' WHERE id = 'trg_run_x_a1'`);
      expect(await adoptOrphanBatches(t.db, at, "other", 1_000)).toEqual([]);
      // Resumed (a new process, the same worker id): the uncollected batch is its own to poll.
      expect((await uncollectedBatchesOf(t.db, at, "trg_run_x_a1")).map((b) => b.id)).toEqual(["b1"]);
      expect(await uncollectedBatchesOf(t.db, at, "other")).toEqual([]);
      // Beating now, not ahead, it lapses like any worker: another one takes the batch over.
      await heartbeat(t.db, "trg_run_x_a1", run.id);
      await t.db.rows(sql`UPDATE workers SET heartbeat_at = heartbeat_at - interval '5 seconds' WHERE id = 'trg_run_x_a1'`);
      expect((await adoptOrphanBatches(t.db, at, "other", 1_000)).map((b) => b.id)).toEqual(["b1"]);
      expect(await uncollectedBatchesOf(t.db, at, "trg_run_x_a1")).toEqual([]);
    });

    it("records a batch's requests a piece at a time and reads them all back, also a batch recorded in one value before", async () => {
      const plan = planStages(mini);
      const input = writeItems(items);
      const { run } = await createOrContinueRun(t.db, mini, plan, input, { fresh: true });
      const ctx: RunContext = { db: t.db, pipeline: mini, providers: singleProvider(createInProcessProvider()), runId: run.id, workerId: "w-big", plan, options: DEFAULT_OPTIONS, logger: silentLogger };
      await loadSource(ctx, input);
      const at = { runId: run.id, stageIndex: 1 };
      // Over two pages of reads and nine statements of writes; ids whose text order is not their number order.
      const requests = Object.fromEntries(Array.from({ length: 2_300 }, (_, i) => [`c-${i}`, { itemId: `a${(i % 5) + 1}`, inputHash: `in-${i}`, requestHash: `h-${i}`, request: { customId: `c-${i}`, messages: [{ role: "user", content: `ticket ${i} «é»` }] } }]));
      await recordBatch(t.db, at, { id: "big@inprocess", batchId: "big", provider: "inprocess", status: "submitted", requests }, "w-big", [], undefined);
      const stored = await t.db.rows<{ n: number; whole: unknown }>(sql`
        SELECT (SELECT count(*)::int FROM provider_batch_requests WHERE batch_row_id = 'big@inprocess') AS n, requests AS whole FROM provider_batches WHERE id = 'big@inprocess'`);
      expect(stored).toEqual([{ n: 2_300, whole: {} }]);
      const [mine] = await uncollectedBatchesOf(t.db, at, "w-big");
      expect(mine!.requests).toEqual(requests);
      // A row recorded before the requests had a table of their own keeps them in its column.
      await t.db.rows(sql`INSERT INTO provider_batches (id, batch_id, run_id, stage_index, provider, status, requests, worker_id)
        VALUES ('old@inprocess', 'old', ${run.id}, 1, 'inprocess', 'submitted', ${JSON.stringify({ "c-old": { itemId: "a1" } })}::jsonb, 'w-gone')`);
      const adopted = await adoptOrphanBatches(t.db, at, "w-next", 1_000);
      expect(adopted.map((b) => [b.id, Object.keys(b.requests).length])).toEqual([["big@inprocess", 2_300], ["old@inprocess", 1]]);
      expect(adopted[0]!.requests).toEqual(requests);
      expect(adopted[1]!.requests).toEqual({ "c-old": { itemId: "a1" } });
      // A submission withdrawn takes its requests with it.
      await withdrawBatch(t.db, at, "big@inprocess", undefined);
      expect(await t.db.rows(sql`SELECT 1 FROM provider_batch_requests WHERE batch_row_id = 'big@inprocess'`)).toEqual([]);
    });

    it("upserts commit targets idempotently and withdraws items that stop reaching commit", async () => {
      const providers = singleProvider(createInProcessProvider());
      const first = await runPipelineForTest(mini, { items, db: t.db, providers });
      const before = await t.db.rows<{ key: string; committed_at: string }>(sql`SELECT key, committed_at FROM mini_out ORDER BY key`);
      // Same input again: nothing in the target changes.
      await runPipelineForTest(mini, { items, db: t.db, providers });
      const after = await t.db.rows<{ key: string; committed_at: string }>(sql`SELECT key, committed_at FROM mini_out ORDER BY key`);
      expect(after).toEqual(before);
      expect(first.summary.items.byStatus.committed).toBe(3);

      // a5 now reads as small talk: classify says "other", the gate keeps it out, the target says withdrawn.
      const changed = items.map((i) => (i.id === "a5" ? { ...i, text: "good morning" } : i));
      const third = await runPipelineForTest(mini, { items: changed, db: t.db, providers });
      expect(third.summary.items.byStatus).toEqual({ committed: 2, gated_out: 3 });
      const target = await third.target("mini_out");
      expect(target.a5!.status).toBe("withdrawn");
      expect(target.a1!.status).toBe("active");
      // Only a5's stages after filter were recomputed.
      expect(third.summary.stages.find((s) => s.id === "classify")).toMatchObject({ processed: 4, reused: 3, providerCalls: 1 });
    });

    it("creates a commit target once when several workers reach it together", async () => {
      for (let n = 0; n < 10; n++) {
        const stage = { target: { table: `race_out_${n}` } } as CommitStage;
        const results = await Promise.allSettled(Array.from({ length: 6 }, () => ensureTarget(t.db, stage.target.table)));
        expect(results.filter((r) => r.status === "rejected")).toEqual([]);
        const cols = await t.db.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = ${`race_out_${n}`}`);
        expect(cols[0]!.n).toBe(8);
      }
    });

    it("enforces one output row per (stage version, item, input hash)", async () => {
      const row = { pipeline: "p", stage_id: "s", stage_version: "v", item_id: "i", input_hash: "h" };
      const insert = () => t.db.rows(sql`
        INSERT INTO stage_outputs (pipeline, stage_id, stage_version, item_id, input_hash, status, output, output_hash, run_id)
        VALUES (${row.pipeline}, ${row.stage_id}, ${row.stage_version}, ${row.item_id}, ${row.input_hash}, 'validated', '{}'::jsonb, 'x', 'r')`);
      await insert();
      await expect(insert()).rejects.toThrow();
    });
  });
}

describe.skipIf(!process.env.DATABASE_URL)("Postgres without prepared statements (a pooler in transaction mode)", () => {
  it("runs a pipeline and reuses its outputs as with them", async () => {
    const t = await freshPostgres(process.env.DATABASE_URL!);
    const unprepared = await openDatabase({ url: t.url!, prepare: false });
    try {
      const providers = singleProvider(createInProcessProvider());
      const first = await runPipelineForTest(mini, { items, db: unprepared, providers });
      expect(first.summary.items.byStatus).toEqual({ committed: 3, gated_out: 2 });
      const statements = await unprepared.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM pg_prepared_statements`);
      expect(statements[0]!.n).toBe(0);
      const again = await runPipelineForTest(mini, { items, db: unprepared, providers });
      expect(again.summary.stages.every((st) => st.providerCalls === 0)).toBe(true);
    } finally {
      await unprepared.close();
      await t.drop();
    }
  });
});

describe("id lists passed to the store", () => {
  it("survive any characters a source key can hold", async () => {
    const { anyText } = await import("../src/store/sql.ts");
    const { memoryDatabase } = await import("../src/testing/databases.ts");
    const ids = ["a", 'quo"te', "back\\slash", "com,ma", "{brace}", "sp ace", "ünï", "NULL", 'x"\\y'];
    const t = await memoryDatabase();
    try {
      const values = sql.join([...ids, "other"].map((v) => sql`(${v})`), sql`, `);
      const rows = await t.db.rows<{ x: string }>(sql`SELECT x FROM (VALUES ${values}) AS v(x) WHERE x = ${anyText(ids)}`);
      expect(rows.map((r) => r.x).sort()).toEqual([...ids].sort());
    } finally {
      await t.drop();
    }
  });
});
