import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql, type SQL } from "drizzle-orm";
import type { Database } from "../src/store/database.ts";
import { writeResults, type ResultsTarget, type ResultToWrite, type WriteMode, type WriteOutcome } from "../src/store/results.ts";
import { writeResultsBefore } from "../src/store/results-before.ts";
import { insertItems } from "../src/store/runs.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import { explain, type PlanNode } from "./fixtures/plans.ts";

/**
 * A chunk's write reads rows in proportion to the chunk, not to the stage
 * or to the chunk squared, on statistics that never caught up with the
 * rows (embedded PGlite never analyzes; autovacuum is off here so Postgres
 * does not either). Checked on the plan the server ran (`EXPLAIN (ANALYZE,
 * FORMAT JSON)`): rows read from `work`, and rows joins compared and threw
 * away. The statement before compared every output of an inserted chunk
 * with every result, and on PGlite read a whole stage to update a chunk.
 */

const CHUNK = 100;
const EARLIER_CHUNKS = 8;

const result = (itemId: string): ResultToWrite => ({
  itemId,
  status: "succeeded_unvalidated",
  inputHash: `in-${itemId}`,
  reused: false,
  output: { value: { label: "a" }, status: "succeeded_unvalidated", costUsd: 0.001, hash: `out-${itemId}` },
  attempts: [{ attempt: 1, provider: "openai", model: "m", mode: "realtime", requestHash: `req-${itemId}`, inputTokens: 10, outputTokens: 2, cachedTokens: 0, costUsd: 0.001, listCostUsd: 0.001, latencyMs: 5 }],
  cache: { requestHash: `req-${itemId}`, provider: "openai", model: "m", response: { text: "a" } },
});

/** Rows each plan node read from `work`, and rows joins threw away, over the whole plan. */
function tally(node: PlanNode, sum = { workRows: 0, joinDiscarded: 0 }) {
  const loops = node["Actual Loops"];
  if (node["Relation Name"] === "work" && /Scan/.test(node["Node Type"])) sum.workRows += (node["Actual Rows"] + (node["Rows Removed by Filter"] ?? 0)) * loops;
  sum.joinDiscarded += (node["Rows Removed by Join Filter"] ?? 0) * loops;
  for (const child of node.Plans ?? []) tally(child, sum);
  return sum;
}

/** Run a write with its one statement explained: the write happens, and its plan is returned. */
async function explained(db: Database, write: (db: Database) => Promise<WriteOutcome>): Promise<PlanNode> {
  let plan: PlanNode | undefined;
  const spy: Database = {
    ...db,
    rows: async <T,>(query: SQL) => {
      plan = await explain(db, query);
      return [{ dropped: null, replaced: null }] as T[];
    },
  };
  await write(spy);
  return plan!;
}

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`the rows a write reads on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeAll(async () => {
      t = await driver.open();
      // No statistics, ever: Postgres' autovacuum would otherwise analyze the tables at a moment of its choosing (embedded PGlite never does).
      await t.db.rows(sql`ALTER TABLE work SET (autovacuum_enabled = false)`);
      await t.db.rows(sql`ALTER TABLE stage_outputs SET (autovacuum_enabled = false)`);
    });
    afterAll(async () => {
      await t?.drop();
    });

    it.each([
      { statement: "now", write: writeResults },
      { statement: "before", write: writeResultsBefore },
    ])("$statement: a later stage's chunk of 100, inserted after 800 rows", async ({ statement, write }) => {
      const runId = `run-${statement}-insert`;
      const to = target(runId, "insert");
      const chunks = chunksOf(EARLIER_CHUNKS + 1);
      for (const chunk of chunks.slice(0, EARLIER_CHUNKS)) await write(t.db, to, chunk);

      const { workRows, joinDiscarded } = tally(await explained(t.db, (db) => write(db, to, chunks[EARLIER_CHUNKS]!)));

      expect(await withOutputs(runId)).toBe((EARLIER_CHUNKS + 1) * CHUNK);
      if (statement === "now") {
        // One probe per item, and joins that compare each row once.
        expect(workRows).toBeLessThanOrEqual(2 * CHUNK);
        expect(joinDiscarded).toBeLessThanOrEqual(CHUNK);
      } else {
        // What the check above catches: the statement before compared every output of the chunk with every result, twice.
        expect(joinDiscarded).toBeGreaterThan(CHUNK * CHUNK);
      }
    });

    // Postgres weighs a scan of the stage against the probes by its cost model
    // (on a never-analyzed table it scans the stage's index range; analyzed, a
    // 10,000-row table is scanned whole, which it rightly prices below 100
    // probes): the bound holds on embedded PGlite, whose statistics go stale,
    // so it is checked there only.
    if (driver.name === "pglite") it.each([
      { statement: "now", write: writeResults },
      { statement: "before", write: writeResultsBefore },
    ])("$statement: a first stage's chunk of 100 updated, 900 rows at the stage, never analyzed", async ({ statement, write }) => {
      const runId = `run-${statement}-update`;
      const to = target(runId, "unguarded");
      const chunks = chunksOf(EARLIER_CHUNKS + 1);
      await insertItems(t.db, runId, { index: 0, id: "s" }, chunks.flat().map((r, line) => ({ item_id: r.itemId, line, content_hash: r.itemId, data: {} })));

      const { workRows } = tally(await explained(t.db, (db) => write(db, to, chunks[EARLIER_CHUNKS]!)));

      expect(await withOutputs(runId)).toBe(CHUNK);
      // The statement now names the chunk's ids as an index condition; the one before read the whole stage into a hash.
      expect(workRows).toBe(statement === "now" ? CHUNK : (EARLIER_CHUNKS + 1) * CHUNK);
    });

    const target = (runId: string, mode: WriteMode): ResultsTarget => ({ pipeline: runId, runId, stage: { index: mode === "insert" ? 1 : 0, id: "s", version: "v1" }, workerId: "w1", mode, retryDelays: [1] });
    const chunksOf = (n: number) => Array.from({ length: n }, (_, c) => Array.from({ length: CHUNK }, (_, k) => result(`item-${String(c * CHUNK + k).padStart(5, "0")}`)));
    const withOutputs = async (runId: string) => (await t.db.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM work WHERE run_id = ${runId} AND output_id IS NOT NULL`))[0]!.n;
  });
}
