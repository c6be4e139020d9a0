import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql, type SQL } from "drizzle-orm";
import type { Database } from "../src/store/database.ts";
import { editsInForce } from "../src/store/reviews.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import { explain, type PlanNode } from "./fixtures/plans.ts";

/**
 * Every chunk asks which of its items a review settled with edits
 * (`editsInForce`). That lookup goes by item across stages, which the work
 * table's primary key (run, stage, item) cannot serve: it read every row of
 * the run, once per chunk, so a run's time grew with the square of its items
 * (53 ms a chunk at 100k tickets on Postgres, 10.7 s of the server's time in
 * one run). A partial index of the rows a review settled serves it. Checked
 * on the plan the server ran (`EXPLAIN (ANALYZE, FORMAT JSON)`): the rows it
 * read from `work`.
 */

const ITEMS = 2_000;
const STAGES = 3;

/** Rows each plan node read from `work`, over the whole plan. */
function workRows(node: PlanNode): number {
  const own = node["Relation Name"] === "work" && /Scan/.test(node["Node Type"]) ? (node["Actual Rows"] + (node["Rows Removed by Filter"] ?? 0) + (node["Rows Removed by Index Recheck"] ?? 0)) * node["Actual Loops"] : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + workRows(child), 0);
}

/** The database with its statements explained as they run: the plan of the last one is kept. */
function explaining(db: Database): { db: Database; plan: () => PlanNode } {
  let plan: PlanNode | undefined;
  return {
    db: {
      ...db,
      rows: async <T,>(query: SQL) => {
        plan = await explain(db, query);
        // The statement ran (ANALYZE executes it); its rows are read again for the caller.
        return db.rows<T>(query);
      },
    },
    plan: () => plan!,
  };
}

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`the rows a chunk's review lookup reads on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    const runId = "run-reviews-plan";
    const id = (i: number) => `item-${String(i).padStart(5, "0")}`;

    beforeAll(async () => {
      t = await driver.open();
      // No statistics: the lookup must not depend on them (embedded PGlite never analyzes).
      await t.db.rows(sql`ALTER TABLE work SET (autovacuum_enabled = false)`);
      await t.db.rows(sql`
        INSERT INTO work (run_id, stage_index, item_id, stage_id, status)
        SELECT ${runId}, s, 'item-' || lpad(i::text, 5, '0'), 'stage-' || s, 'succeeded'
        FROM generate_series(0, ${STAGES - 1}) AS s, generate_series(0, ${ITEMS - 1}) AS i`);
      // One item a reviewer edited at the last stage, one approved as it was.
      const [edited] = await t.db.rows<{ id: number }>(sql`
        INSERT INTO review_decisions (pipeline, stage_id, stage_version, item_id, input_hash, decision, edits, reviewer, run_id)
        VALUES ('p', ${`stage-${STAGES - 1}`}, 'v1', ${id(1_500)}, 'h', 'edit', ${JSON.stringify({ priority: "high" })}::jsonb, 'ana', ${runId})
        RETURNING id`);
      const [approved] = await t.db.rows<{ id: number }>(sql`
        INSERT INTO review_decisions (pipeline, stage_id, stage_version, item_id, input_hash, decision, reviewer, run_id)
        VALUES ('p', ${`stage-${STAGES - 1}`}, 'v1', ${id(1_510)}, 'h', 'approve', 'ana', ${runId})
        RETURNING id`);
      await t.db.rows(sql`UPDATE work SET review_id = ${edited!.id} WHERE run_id = ${runId} AND stage_index = ${STAGES - 1} AND item_id = ${id(1_500)}`);
      await t.db.rows(sql`UPDATE work SET review_id = ${approved!.id} WHERE run_id = ${runId} AND stage_index = ${STAGES - 1} AND item_id = ${id(1_510)}`);
    });
    afterAll(async () => {
      await t?.drop();
    });

    it(`finds a chunk's edits by reading the reviewed rows only, not the run's ${ITEMS * STAGES}`, async () => {
      const chunk = Array.from({ length: 500 }, (_, k) => id(1_200 + k));
      const spy = explaining(t.db);
      const edits = await editsInForce(spy.db, runId, chunk);
      expect(Object.fromEntries(edits)).toEqual({ [id(1_500)]: { priority: "high" } });
      // At most the two reviewed rows; a scan of the run would read 6,000.
      expect(workRows(spy.plan())).toBeLessThanOrEqual(2);
    });

    it("finds none for a chunk no review settled", async () => {
      const spy = explaining(t.db);
      expect((await editsInForce(spy.db, runId, Array.from({ length: 500 }, (_, k) => id(k)))).size).toBe(0);
      expect(workRows(spy.plan())).toBeLessThanOrEqual(2);
    });
  });
}
