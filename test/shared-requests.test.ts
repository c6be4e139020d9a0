import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProviderSet } from "../src/engine/context.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { openDatabase } from "../src/store/index.ts";
import { freshPostgres } from "../src/testing/databases.ts";
import mini from "./fixtures/pipelines/mini.ts";
import { simulatedProviders } from "./fixtures/simulated.ts";

/**
 * Processes sharing a run on Postgres pay for an identical request once: a
 * request another process is paying for right now is awaited, not sent again.
 */
const url = process.env.DATABASE_URL;
// 40 distinct texts under 480 ids, spread over the whole id range: every chunk holds copies of most of them.
const texts = Array.from({ length: 40 }, (_, i) => `${["invoice charged twice", "the app crashes on export", "refund my invoice please", "error when I log in"][i % 4]} (case ${i})`);
const items = Array.from({ length: 480 }, (_, i) => ({ id: `r${String(i).padStart(4, "0")}`, text: texts[i % texts.length]! }));

let sim: Simulator;
beforeAll(async () => {
  // Latency keeps calls in flight long enough for the processes to overlap.
  sim = await startSimulator({ port: 0, config: { latency: { meanMs: 60, jitterMs: 20 } } });
});
afterAll(async () => {
  await sim?.close();
});

const providers = (): ProviderSet => simulatedProviders(sim);

describe.skipIf(!url)(`identical requests across processes on Postgres${url ? "" : " (skipped: DATABASE_URL is not set)"}`, () => {
  for (const processes of [2, 3]) {
    it(`are paid for once with ${processes} processes sharing the run, with the same rows as one`, async () => {
      const pg = await freshPostgres(url!);
      const others = await Promise.all(Array.from({ length: processes - 1 }, () => openDatabase({ url: pg.url! })));
      try {
        const input = join(mkdtempSync(join(tmpdir(), "sluice-shared-requests-")), "items.jsonl");
        writeFileSync(input, items.map((i) => JSON.stringify(i)).join("\n"));
        sim.reset();
        const summaries = await Promise.all([pg.db, ...others].map((db) => runPipeline({ db, pipeline: mini, providers: providers() }, input)));
        expect(new Set(summaries.map((s) => s.runId)).size).toBe(1);
        const runId = summaries[0]!.runId;
        // The processes shared classify (which of them got chunks is up to timing).
        const workers = await pg.db.rows<{ n: number }>(sql`SELECT count(DISTINCT claimed_by)::int AS n FROM work WHERE run_id = ${runId} AND stage_id = 'classify'`);
        expect(workers[0]!.n).toBeGreaterThanOrEqual(2);
        // One paid request per distinct text: none paid twice.
        const billed = Object.values(sim.stats().billedByRequestHash);
        expect(billed).toHaveLength(texts.length);
        expect(billed.filter((n) => n > 1)).toEqual([]);
        // The same outputs a single process gives.
        const single = await freshPostgres(url!);
        try {
          const alone = await runPipeline({ db: single.db, pipeline: mini, providers: providers() }, input);
          expect(alone.items.byStatus).toEqual(summaries[0]!.items.byStatus);
          const rows = async (db: typeof pg.db, id: string) =>
            db.rows(sql`SELECT w.item_id, w.status, o.output FROM work w LEFT JOIN stage_outputs o ON o.id = w.output_id WHERE w.run_id = ${id} ORDER BY w.stage_index, w.item_id`);
          expect(await rows(pg.db, runId)).toEqual(await rows(single.db, alone.runId));
        } finally {
          await single.drop();
        }
      } finally {
        for (const db of others) await db.close();
        await pg.drop();
      }
    }, 120_000);
  }
});
