import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TransientError } from "../src/core/errors.ts";
import { definePipeline } from "../src/core/define.ts";
import { isLlmStage } from "../src/core/types.ts";
import { COLLECT_GROUP } from "../src/engine/batch-collect.ts";
import type { ProviderSet } from "../src/engine/context.ts";
import { costOf, createProvider } from "../src/providers/index.ts";
import type { BatchApi, BatchResult, Provider } from "../src/providers/types.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import mini from "./fixtures/pipelines/mini.ts";

/**
 * A provider batch is collected as its answers stream in, `COLLECT_GROUP` at
 * a time: the first answers are written while the rest are still being read
 * (what a collection holds is one group, whatever the batch's size), and a
 * batch whose results stop part way keeps the answers it read: only the
 * rest go out again.
 */
const batched = definePipeline({ ...mini, id: "mini-batched", stages: mini.stages.map((s) => (isLlmStage(s) ? { ...s, provider: "openai" as const, mode: "batch" as const } : s)) });
const ITEMS = COLLECT_GROUP + 300;
const options = { batchPollMs: 10, batchPollMaxMs: 50, backoffBaseMs: 10, backoffMaxMs: 20 };

let sim: Simulator;
let input: string;
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
  const dir = mkdtempSync(join(tmpdir(), "sluice-batch-collect-"));
  input = join(dir, "items.jsonl");
  writeFileSync(input, Array.from({ length: ITEMS }, (_, i) => JSON.stringify({ id: `c${String(i).padStart(5, "0")}`, text: `invoice charged twice #${i}` })).join("\n"));
});
afterAll(async () => {
  await sim?.close();
});

/** The simulator's OpenAI provider, with its batch results read through `results` (the real reader is passed in). */
function providers(results: (real: BatchApi["results"], batchId: string) => AsyncIterable<BatchResult>): ProviderSet {
  const openai = createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, env: {} });
  const real = openai.batch!;
  const batch = new Proxy(real, {
    get: (target, key) => (key === "results" ? (id: string) => results((b) => target.results(b), id) : bound(target, key)),
  });
  const provider = new Proxy(openai, { get: (target, key) => (key === "batch" ? batch : bound(target, key)) }) as Provider;
  return { defaultProvider: "openai", get: () => provider, cost: costOf };
}

function bound(target: object, key: string | symbol): unknown {
  const value = Reflect.get(target, key, target);
  return typeof value === "function" ? value.bind(target) : value;
}

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`collecting a provider batch on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await driver.open();
      sim.reset();
    });
    afterEach(async () => {
      await t.drop();
    });

    /** Items of the classify stage written so far (a batch's items are `processing` until their answers are). */
    const written = async () => (await t.db.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM work WHERE stage_id = 'classify' AND status <> 'processing'`))[0]!.n;

    it("writes the first answers while the rest are still being read", async () => {
      const seen: number[] = [];
      const summary = await runPipeline(
        {
          db: t.db,
          pipeline: batched,
          providers: providers(async function* (real, id) {
            let read = 0;
            for await (const result of real(id)) {
              // Asked for the answer after a whole group: that group is in the store.
              if (read === COLLECT_GROUP) seen.push(await written());
              read++;
              yield result;
            }
          }),
          options,
        },
        input,
      );
      expect(seen).toEqual([COLLECT_GROUP]);
      expect(summary.stages.find((s) => s.id === "classify")!.batchCalls).toBe(ITEMS);
      expect(summary.items.byStatus).toEqual({ committed: ITEMS });
    });

    it("keeps the answers read before a batch's results stop, and sends only the rest again", async () => {
      const cutAfter = COLLECT_GROUP + 100;
      let reads = 0;
      const summary = await runPipeline(
        {
          db: t.db,
          pipeline: batched,
          providers: providers(async function* (real, id) {
            const first = reads++ === 0;
            let read = 0;
            for await (const result of real(id)) {
              if (first && read === cutAfter) throw new TransientError("connection reset while reading the batch's output file");
              read++;
              yield result;
            }
          }),
          options,
        },
        input,
      );
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
  });
}
