import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { DEFAULT_OPTIONS, silentLogger, type RunContext } from "../src/engine/context.ts";
import { planStages } from "../src/engine/plan.ts";
import { createOrContinueRun, loadSource } from "../src/engine/runs.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { readSource } from "../src/sources/index.ts";
import { rejectedRows } from "../src/store/reports.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import { singleProvider } from "../src/testing/harness.ts";
import mini from "./fixtures/pipelines/mini.ts";

/**
 * A run's load finds duplicate ids in the store, not in memory (the reader
 * remembers no id, so a million-row input costs no more memory than a small
 * one). What it decides must be what the reader decides when it does remember
 * them: row for row, on an input of several load batches (1,000 rows each)
 * where ids repeat within a batch, across batches, and three times over.
 */
function messyIds(): string {
  const rows: object[] = [];
  for (let i = 0; i < 2600; i++) rows.push({ id: `t${i}`, text: `ticket ${i}` });
  // Identical copies and copies with other content, near and far from their first row.
  for (const [at, of, same] of [
    [10, 3, true], [20, 3, false], [999, 998, true], [1001, 5, true], [1500, 5, false],
    [1700, 5, true], [2100, 1999, false], [2200, 2199, true], [2500, 1200, true], [2550, 1200, false],
  ] as const) {
    rows.splice(at, 0, { id: `t${of}`, text: same ? `ticket ${of}` : `ticket ${of}, again and changed` });
  }
  const dir = mkdtempSync(join(tmpdir(), "sluice-load-"));
  const path = join(dir, "items.jsonl");
  writeFileSync(path, rows.map((r) => JSON.stringify(r)).join("\n"));
  return path;
}

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`a run's load on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeAll(async () => {
      t = await driver.open();
    }, 120_000);
    afterAll(() => t?.drop());

    it("finds the duplicate ids the reader finds in memory, with the same reasons, and a second load changes nothing", async () => {
      const input = messyIds();
      const expected: { line: number; item_id: string | null; state: string; reason: string }[] = [];
      let items = 0;
      for await (const r of readSource(input, mini.source)) {
        if (r.kind === "item") items++;
        else if (r.kind === "duplicate") expected.push({ line: r.line, item_id: r.itemId, state: "deduplicated", reason: `identical to line ${r.firstLine} (same id "${r.itemId}", same content); processed once` });
        else expected.push({ line: r.line, item_id: r.itemId ?? null, state: "quarantined", reason: r.reason });
      }
      // The input is what it is meant to be: 10 repeated ids, 4 of them with other content.
      expect(items).toBe(2600);
      expect(expected.filter((e) => e.state === "deduplicated")).toHaveLength(6);
      expect(expected.filter((e) => e.state === "quarantined")).toHaveLength(4);

      const plan = planStages(mini);
      const { run } = await createOrContinueRun(t.db, mini, plan, input, { fresh: true });
      const ctx: RunContext = {
        db: t.db, pipeline: mini, providers: singleProvider(createInProcessProvider()), runId: run.id, workerId: "loader", plan,
        options: DEFAULT_OPTIONS, logger: silentLogger,
      };
      const recorded = async () => ({
        rejected: (await rejectedRows(t.db, run.id, { all: true })).map(({ line, item_id, state, reason }) => ({ line, item_id, state, reason })),
        items: await t.db.rows<{ item_id: string; line: number }>(sql`SELECT item_id, line FROM run_items WHERE run_id = ${run.id} ORDER BY line`),
        queued: (await t.db.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM work WHERE run_id = ${run.id}`))[0]!.n,
      });

      expect(await loadSource(ctx, input)).toBe(2610);
      const first = await recorded();
      expect(first.rejected).toEqual(expected);
      expect(first.items).toHaveLength(2600);
      expect(first.queued).toBe(2600);
      // Each id's first row is the one kept.
      expect(first.items.find((r) => r.item_id === "t5")!.line).toBe(6);
      // A conflicting copy keeps its text for a person to look at.
      const changed = expected.find((e) => e.state === "quarantined" && e.item_id === "t5")!;
      const conflict = (await rejectedRows(t.db, run.id)).find((r) => r.line === changed.line)!;
      expect(conflict.raw).toBe(JSON.stringify({ id: "t5", text: "ticket 5, again and changed" }));

      // A load cut short is done again from the top: nothing is added or changed.
      expect(await loadSource(ctx, input)).toBe(2610);
      expect(await recorded()).toEqual(first);
    }, 180_000);
  });
}
