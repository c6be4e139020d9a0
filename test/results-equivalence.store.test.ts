import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { writeResults, type ResultsTarget, type ResultToWrite, type WriteMode } from "../src/store/results.ts";
import { writeResultsBefore } from "../src/store/results-before.ts";
import { insertItems } from "../src/store/runs.ts";
import { claimItems } from "../src/store/work.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";

/**
 * The write statement was rewritten for speed (`npm run bench -- write-path`):
 * on the same results, in every write mode, it records the same rows in
 * every table and reports the same items dropped and replaced as the
 * statement before it (`results-before.ts`).
 */

type Variant = "before" | "now";
const write = (v: Variant) => (v === "before" ? writeResultsBefore : writeResults);

/** A mix of what a chunk carries: fresh outputs, reuse hits, failures to retry, terminal failures, a review decision. */
function results(v: Variant, ids: readonly string[], storedId: number): ResultToWrite[] {
  return ids.map((itemId, n): ResultToWrite => {
    const requestHash = `${v}:req-${itemId}`;
    const attempt = { attempt: 1, provider: "openai", model: "gpt-4o-mini", mode: "realtime" as const, requestHash, inputTokens: 100 + n, outputTokens: 9, cachedTokens: n % 2, costUsd: 0.0001 * n, listCostUsd: 0.0001 * n, latencyMs: 20 + n };
    switch (n % 5) {
      case 0:
        return { itemId, status: "succeeded_unvalidated", inputHash: `in-${itemId}`, reused: false, output: { value: { label: `l${n}`, quote: 'a "b" \\ c' }, status: "succeeded_unvalidated", costUsd: 0.0001 * n, hash: `out-${itemId}` }, attempts: [attempt], cache: { requestHash, provider: "openai", model: "gpt-4o-mini", response: { text: `{"label":"l${n}"}` } } };
      case 1:
        return { itemId, status: "validated", inputHash: `in-${itemId}`, reused: true, stored: { id: storedId }, attempts: [] };
      case 2:
        return { itemId, status: "failed_retryable", inputHash: `in-${itemId}`, reused: false, errorClass: "rate_limited", errorMessage: "429 from the provider", attempts: [{ ...attempt, errorClass: "rate_limited", errorMessage: "429 from the provider" }, { ...attempt, attempt: 2, errorClass: "rate_limited", errorMessage: "429 again" }] };
      case 3:
        return { itemId, status: "needs_review", inputHash: `in-${itemId}`, reused: false, reviewId: 41, output: { value: null, status: "needs_review", costUsd: 0, hash: `out-${itemId}` }, attempts: [{ ...attempt, provider: "", model: "" }] };
      default:
        return { itemId, status: "gated_out", reused: false, attempts: [] };
    }
  });
}

/** Everything a write recorded for one pipeline, without the ids and times that differ between any two writes. */
async function recorded(t: TestDatabase, mode: WriteMode, v: Variant) {
  const [work, outputs, attempts, cache] = await Promise.all([
    t.db.rows(sql`SELECT w.stage_index, w.item_id, w.stage_id, w.status, w.input_hash, o.output_hash AS output, w.reused, w.claimed_by, w.attempts, w.error_class, w.error_message, w.review_id,
        w.not_before IS NOT NULL AS waits
      FROM work w LEFT JOIN stage_outputs o ON o.id = w.output_id WHERE w.run_id = ${`run-${mode}-${v}`} ORDER BY 1, 2`),
    t.db.rows(sql`SELECT stage_id, stage_version, item_id, input_hash, status, output, output_hash, cost_usd FROM stage_outputs WHERE pipeline = ${`p-${mode}-${v}`} ORDER BY item_id, input_hash`),
    t.db.rows(sql`SELECT stage_id, item_id, attempt, provider, model, mode, replace(request_hash, ${`${v}:`}, '') AS request, input_tokens, output_tokens, cached_tokens, cost_usd, list_cost_usd, latency_ms, error_class, error_message
      FROM attempts WHERE run_id = ${`run-${mode}-${v}`} ORDER BY item_id, attempt`),
    t.db.rows(sql`SELECT replace(request_hash, ${`${v}:`}, '') AS request, provider, model, response FROM request_cache WHERE request_hash LIKE ${`${v}:req-${mode}-%`} ORDER BY 1`),
  ]);
  return { work, outputs, attempts, cache };
}

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`the write statement against the one before on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeAll(async () => {
      t = await driver.open();
    });
    afterAll(async () => {
      await t?.drop();
    });

    it.each(["insert", "unguarded", "guarded"] as WriteMode[])("records the same rows and outcome in %s mode", async (mode) => {
      const outcome: Record<Variant, unknown> = { before: undefined, now: undefined };
      for (const v of ["before", "now"] as Variant[]) {
        const runId = `run-${mode}-${v}`;
        const index = mode === "insert" ? 1 : 0;
        const to: ResultsTarget = { pipeline: `p-${mode}-${v}`, runId, stage: { index, id: `s-${mode}`, version: "v1" }, workerId: "w1", mode, retryDelays: [5, 60] };
        const ids = Array.from({ length: 40 }, (_, n) => `${mode}-${String(n).padStart(3, "0")}`);
        // An earlier run stored the output of item 5 under the same key with another value: the write keeps that one and says so.
        const earlier = { ...to, runId: `earlier-${v}`, mode: "insert" as const };
        await write(v)(t.db, earlier, [{ itemId: ids[5]!, status: "succeeded_unvalidated", inputHash: `in-${ids[5]}`, reused: false, output: { value: { label: "other" }, status: "succeeded_unvalidated", costUsd: 0, hash: "out-other" }, attempts: [] }]);
        const [stored] = await t.db.rows<{ id: number }>(sql`SELECT id FROM stage_outputs WHERE pipeline = ${`p-${mode}-${v}`} AND item_id = ${ids[5]!}`);
        if (mode === "insert") {
          // Item 7 already has its row at the stage: it is left alone and said to be dropped.
          await write(v)(t.db, { ...to, mode: "insert" }, [{ itemId: ids[7]!, status: "gated_out", reused: false, attempts: [] }]);
        } else {
          await insertItems(t.db, runId, { index, id: `s-${mode}` }, ids.map((item_id, line) => ({ item_id, line, content_hash: item_id, data: {} })));
          // Under a lease, only the items this worker still holds are written: item 9 was never claimed by it.
          if (mode === "guarded") await claimItems(t.db, { runId, stageIndex: index }, "w1", ids.filter((_, n) => n !== 9));
        }
        outcome[v] = await write(v)(t.db, to, results(v, ids, Number(stored!.id)));
      }
      expect(outcome.now).toEqual(outcome.before);
      expect(outcome.now).toEqual({
        dropped: mode === "insert" ? [`${mode}-007`] : mode === "guarded" ? [`${mode}-009`] : [],
        replaced: [`${mode}-005`],
      });
      const [before, now] = [await recorded(t, mode, "before"), await recorded(t, mode, "now")];
      expect(now).toEqual(before);
      // What was compared: every item's work row; 16 outputs (item 5's the earlier one); 32 attempts
      // but the 2 of item 7, left alone in insert mode; the 8 answers paid for, item 5's too.
      expect(now.work).toHaveLength(40);
      expect(now.outputs).toHaveLength(16);
      expect(now.attempts).toHaveLength(mode === "insert" ? 30 : 32);
      expect(now.cache).toHaveLength(8);
    });
  });
}
