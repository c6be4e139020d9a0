import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { writeResults, type ResultsTarget, type ResultToWrite } from "../src/store/results.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";

/**
 * A later stage of a segment writes its work rows by inserting them
 * (`insert` mode): an item that already has a row at the stage is left
 * alone, results and all, and said to be dropped.
 */
const target = (runId: string): ResultsTarget => ({
  pipeline: "p",
  runId,
  stage: { index: 1, id: "classify", version: "v1" },
  workerId: "w1",
  mode: "insert",
  retryDelays: [1],
});

const result = (itemId: string, label: string): ResultToWrite => ({
  itemId,
  status: "succeeded_unvalidated",
  inputHash: `h-${itemId}`,
  reused: false,
  output: { value: { label }, status: "succeeded_unvalidated", costUsd: 0.001, hash: `o-${itemId}-${label}` },
  attempts: [
    { attempt: 1, provider: "inprocess", model: "m", mode: "realtime", requestHash: `r-${itemId}-${label}`, inputTokens: 10, outputTokens: 2, cachedTokens: 0, costUsd: 0.001, listCostUsd: 0.001, latencyMs: 5 },
  ],
});

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`results written by insert on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeAll(async () => {
      t = await driver.open();
    });
    afterAll(async () => {
      await t?.drop();
    });

    it("inserts rows for new items and leaves an item that already has one alone, results and all", async () => {
      const to = target("run-insert");
      // Many rows at the stage already, so a write that read the whole stage would still be correct, only slow.
      const earlier = Array.from({ length: 300 }, (_, i) => result(`old-${i}`, "a"));
      expect(await writeResults(t.db, to, earlier)).toEqual({ dropped: [], replaced: [] });

      const outcome = await writeResults(t.db, to, [result("old-7", "b"), result("new-1", "b")]);
      expect(outcome).toEqual({ dropped: ["old-7"], replaced: [] });

      const rows = await t.db.rows<{ item_id: string; output: { label: string } }>(sql`
        SELECT w.item_id, s.output FROM work w JOIN stage_outputs s ON s.id = w.output_id
        WHERE w.run_id = 'run-insert' AND w.item_id IN ('old-7', 'new-1') ORDER BY w.item_id`);
      expect(rows).toEqual([
        { item_id: "new-1", output: { label: "b" } },
        { item_id: "old-7", output: { label: "a" } },
      ]);
      const counts = await t.db.rows<{ work: number; attempts: number; outputs: number }>(sql`
        SELECT (SELECT count(*)::int FROM work WHERE run_id = 'run-insert') AS work,
          (SELECT count(*)::int FROM attempts WHERE run_id = 'run-insert' AND item_id = 'old-7') AS attempts,
          (SELECT count(*)::int FROM stage_outputs WHERE run_id = 'run-insert' AND item_id = 'old-7') AS outputs`);
      expect(counts).toEqual([{ work: 301, attempts: 1, outputs: 1 }]);
    });
  });
}
