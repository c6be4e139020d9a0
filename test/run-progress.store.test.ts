import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { runProgress } from "../src/store/run-details.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";

/**
 * The runs page's progress (`runProgress`): a step per item and stage, done
 * when the item's row there settles, and the steps an item that stopped will
 * never take counted done with it. It used to be the items without open
 * work, which went back each time a stage took items on: in the flow below,
 * from 3 of 4 items (two had settled the first stage and one was gated out)
 * to 1 of 4 once the next stage queued the two.
 */
/** A run's recorded plan: stages by index, each reading the ones named (all before it when not given: a chain). */
function plan(ids: string[], reads: (number[] | undefined)[] = []): string {
  return JSON.stringify(ids.map((id, index) => ({ id, index, kind: "rule", version: "v1", ...(reads[index] ? { reads: reads[index] } : {}) })));
}

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`a run's progress on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    const runId = "run-progress";
    const stages = ["filter", "extract", "commit"];

    beforeAll(async () => {
      t = await driver.open();
      await t.db.rows(sql`INSERT INTO runs (id, pipeline, status, stages) VALUES (${runId}, 'p', 'running', ${plan(stages)}::jsonb)`);
      await t.db.rows(sql`INSERT INTO run_items (run_id, item_id, line, content_hash, data) SELECT ${runId}, x, 1, x, '{}'::jsonb FROM unnest(${"{a,b,c,d}"}::text[]) AS x`);
    }, 60_000);
    afterAll(async () => {
      await t?.drop();
    });

    /** Set the rows of `stage` for these items to `status` (inserted if the item has none there yet). */
    async function set(stage: number, status: string, items: string[], run = runId) {
      await t.db.rows(sql`
        INSERT INTO work (run_id, stage_index, item_id, stage_id, status)
        SELECT ${run}, ${stage}, x, ${`stage-${stage}`}, ${status} FROM unnest(${`{${items.join(",")}}`}::text[]) AS x
        ON CONFLICT (run_id, stage_index, item_id) DO UPDATE SET status = excluded.status`);
    }

    async function newRun(id: string, stagesJson: string, options: object = {}) {
      await t.db.rows(sql`INSERT INTO runs (id, pipeline, status, stages, options) VALUES (${id}, 'p', 'running', ${stagesJson}::jsonb, ${JSON.stringify(options)}::jsonb)`);
      await t.db.rows(sql`INSERT INTO run_items (run_id, item_id, line, content_hash, data) SELECT ${id}, x, 1, x, '{}'::jsonb FROM unnest(${"{a,b}"}::text[]) AS x`);
    }

    /** What the page showed before: items with no row queued, processing or waiting to retry. */
    async function withoutOpenWork() {
      const [r] = await t.db.rows<{ n: number }>(sql`
        SELECT count(*)::int AS n FROM run_items i WHERE i.run_id = ${runId}
          AND NOT EXISTS (SELECT 1 FROM work w WHERE w.run_id = i.run_id AND w.item_id = i.item_id AND w.status IN ('queued', 'processing', 'failed_retryable'))`);
      return r!.n;
    }

    async function progress() {
      const [p] = await runProgress(t.db, [runId]);
      return { share: Math.round(p!.share * 12), ended: p!.ended, items: p!.items };
    }

    it("moves forward only, and counts the steps an item that stopped will never take", async () => {
      // Shares in twelfths: 4 items, 3 stages.
      const seen = [await progress()];
      expect(seen.at(-1)).toEqual({ share: 0, ended: 0, items: 4 });

      await set(0, "queued", ["a", "b", "c", "d"]);
      seen.push(await progress());
      expect(seen.at(-1)).toEqual({ share: 0, ended: 0, items: 4 });

      // a and b pass the filter, c is gated out (its two later steps are done with it), d is being worked on.
      await set(0, "succeeded_unvalidated", ["a", "b"]);
      await set(0, "gated_out", ["c"]);
      await set(0, "processing", ["d"]);
      seen.push(await progress());
      expect(seen.at(-1)).toEqual({ share: 5, ended: 1, items: 4 });
      expect(await withoutOpenWork()).toBe(3);

      // The next stage takes a and b on: nothing settled went back (the old measure did: 3 items to 1).
      await set(1, "queued", ["a", "b"]);
      seen.push(await progress());
      expect(seen.at(-1)).toEqual({ share: 5, ended: 1, items: 4 });
      expect(await withoutOpenWork()).toBe(1);

      // a and b through extract; d dead-lettered at the filter.
      await set(1, "succeeded_unvalidated", ["a", "b"]);
      await set(0, "failed_terminal", ["d"]);
      seen.push(await progress());
      expect(seen.at(-1)).toEqual({ share: 10, ended: 2, items: 4 });

      // The last stage: a committed, b waits for a person.
      await set(2, "processing", ["a", "b"]);
      seen.push(await progress());
      expect(seen.at(-1)).toEqual({ share: 10, ended: 2, items: 4 });
      await set(2, "committed", ["a"]);
      await set(2, "needs_review", ["b"]);
      seen.push(await progress());
      expect(seen.at(-1)).toEqual({ share: 12, ended: 4, items: 4 });

      for (let i = 1; i < seen.length; i++) expect(seen[i]!.share).toBeGreaterThanOrEqual(seen[i - 1]!.share);
    });

    it("with branches, counts the rows settled on both, and reaches the whole only where the branches meet and end", async () => {
      // classify, then billing and bugs (each reads classify), then validate (reads both) and commit.
      const run = "run-progress-branches";
      await newRun(run, plan(["classify", "billing", "bugs", "validate", "commit"], [[], [0], [0], [1, 2], [3]]));
      const share = async () => {
        const [p] = await runProgress(t.db, [run]);
        expect(p!.ended).toBeUndefined();
        return Math.round(p!.share * 10);
      };
      await set(0, "succeeded_unvalidated", ["a", "b"], run);
      // a goes to billing and is gated out of bugs; b the other way: neither has ended.
      await set(1, "succeeded_unvalidated", ["a"], run);
      await set(2, "gated_out", ["a"], run);
      await set(1, "gated_out", ["b"], run);
      await set(2, "succeeded_unvalidated", ["b"], run);
      expect(await share()).toBe(6);
      await set(3, "validated", ["a", "b"], run);
      expect(await share()).toBe(8);
      await set(4, "committed", ["a", "b"], run);
      expect(await share()).toBe(10);
    });

    it("of a rerun that stops after a stage, counts the stages up to it", async () => {
      const run = "run-progress-only";
      await newRun(run, plan(["filter", "classify", "extract"]), { mode: "rerun", stopAfter: 1 });
      await set(0, "succeeded_unvalidated", ["a", "b"], run);
      await set(1, "succeeded_unvalidated", ["a"], run);
      await set(1, "needs_review", ["b"], run);
      expect(await runProgress(t.db, [run])).toEqual([{ run_id: run, items: 2, ended: 2, share: 1 }]);
    });

    it("is nothing for a run without items, and nothing is asked for no runs", async () => {
      await t.db.rows(sql`INSERT INTO runs (id, pipeline, status, stages) VALUES ('run-empty', 'p', 'running', '[]'::jsonb)`);
      expect(await runProgress(t.db, ["run-empty"])).toEqual([{ run_id: "run-empty", items: 0, ended: 0, share: 0 }]);
      expect(await runProgress(t.db, [])).toEqual([]);
    });
  });
}
