import { sql } from "drizzle-orm";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { definePipeline } from "../src/core/define.ts";
import { targetColumns } from "../src/core/target.ts";
import type { JsonSchema, PipelineDef } from "../src/core/types.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { prepareRerun } from "../src/engine/rerun.ts";
import { resumeRun } from "../src/runners/local/index.ts";
import { runIncrement } from "../src/sensors/increments.ts";
import { pruneSnapshots, snapshotNewRows } from "../src/sensors/snapshot.ts";
import { dumpTarget } from "../src/store/reports.ts";
import { loadSourceTable, readRowsPast, sourceCursor } from "../src/store/sources.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import { singleProvider } from "../src/testing/harness.ts";
import { classifyAndCommit } from "./fixtures/classify-commit.ts";

/**
 * Table and glob sources read only what is new: a table source past the
 * cursor its last finished run reached, a glob source the files it has not
 * read. What did not change is not queued, so it is not paid for either.
 */

const rowSchema: JsonSchema = {
  type: "object",
  properties: { id: { type: "string" }, text: { type: "string" }, rank: { type: "integer" }, wave: { type: "integer" } },
};
const columns = targetColumns(rowSchema, "id");

function pipelineOver(source: PipelineDef["source"], id = "notes"): PipelineDef {
  return classifyAndCommit(id, source);
}

const TEXTS = ["invoice charged twice", "the app crashes on login", "hello there", "refund please", "export button broken"];
const row = (i: number, edit = "") => ({ id: `n${String(i).padStart(4, "0")}`, text: `${TEXTS[i % TEXTS.length]} #${i}${edit}`, rank: i });

// A dollar per million tokens: enough for costs to tell which items were paid for.
const priced = (provider: ReturnType<typeof createInProcessProvider>) => singleProvider(provider, (_model, usage) => (usage.inputTokens + usage.outputTokens) / 1e6);

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`a table source with a cursor, on ${driver.name}`, () => {
    let t: TestDatabase;
    let dir: string;
    afterEach(async () => {
      await t?.drop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("reads N rows, then exactly the 50 inserted and 10 updated, and pays only for those", async () => {
      t = await driver.open();
      dir = mkdtempSync(join(tmpdir(), "sluice-increments-"));
      const N = 120;
      expect(await loadSourceTable(t.db, "notes_src", "id", columns, Array.from({ length: N }, (_, i) => row(i)))).toEqual({ inserted: N, updated: 0 });
      const pipeline = pipelineOver({ key: "id", table: "notes_src", cursor: "updated_at" });
      const provider = createInProcessProvider();
      const opts = { db: t.db, pipeline, providers: priced(provider) };

      const first = await runIncrement(opts, { snapshotDir: dir });
      expect(first.read).toBe(N);
      expect(first.runs.map((r) => r.status)).toEqual(["finished"]);
      expect(first.runs[0]!.items.total).toBe(N);
      expect(provider.calls).toBe(N);
      expect(first.cursor!.from).toBeNull();
      expect((await sourceCursor(t.db, pipeline.id, "table:notes_src"))?.value).toBe(first.cursor!.to);
      const firstCost = first.runs[0]!.costUsd;
      expect(firstCost).toBeGreaterThan(0);

      // 50 new rows, 10 changed, and 20 loaded again unchanged (which moves nothing).
      const changes = [
        ...Array.from({ length: 50 }, (_, i) => row(N + i)),
        ...Array.from({ length: 10 }, (_, i) => row(i * 7, " (edited)")),
        ...Array.from({ length: 20 }, (_, i) => row(100 + i)),
      ];
      expect(await loadSourceTable(t.db, "notes_src", "id", columns, changes)).toEqual({ inserted: 50, updated: 10 });

      const second = await runIncrement(opts, { snapshotDir: dir });
      expect(second.read).toBe(60);
      const run = second.runs[0]!;
      expect(run.status).toBe("finished");
      expect(run.items.total).toBe(60);
      const classify = run.stages.find((s) => s.id === "classify")!;
      expect(classify.providerCalls).toBe(60);
      expect(classify.processed).toBe(60);
      expect(provider.calls).toBe(N + 60);
      // Paid for 60 items of about the first run's size: half of what 120 cost, give or take their texts.
      expect(run.costUsd).toBeGreaterThan(firstCost * 0.4);
      expect(run.costUsd).toBeLessThan(firstCost * 0.6);
      expect(second.cursor!.from).toBe(first.cursor!.to);

      const target = (await dumpTarget(t.db, "notes_out")).map((r) => JSON.parse(r) as { key: string; status: string });
      expect(target.length).toBe(N + 50);
      expect(target.every((r) => r.status === "active")).toBe(true);

      // Nothing new: no run, no call, the cursor stays.
      const third = await runIncrement(opts, { snapshotDir: dir });
      expect(third.runs).toEqual([]);
      expect(third.read).toBe(0);
      expect(provider.calls).toBe(N + 60);
      expect((await sourceCursor(t.db, pipeline.id, "table:notes_src"))?.value).toBe(second.cursor!.to);

      // A change made by hand, outside sluice, moves updated_at too; an UPDATE that changes nothing does not.
      await t.db.rows(sql`UPDATE notes_src SET text = 'changed by hand' WHERE id = 'n0003'`);
      await t.db.rows(sql`UPDATE notes_src SET text = text WHERE id = 'n0004'`);
      const fourth = await runIncrement(opts, { snapshotDir: dir });
      expect(fourth.read).toBe(1);
      expect(provider.calls).toBe(N + 61);
    }, 120_000);

    it("reads a query source past an increasing integer id", async () => {
      t = await driver.open();
      dir = mkdtempSync(join(tmpdir(), "sluice-increments-"));
      await loadSourceTable(t.db, "ranked_src", "id", columns, Array.from({ length: 30 }, (_, i) => row(i)));
      // The key is the cursor here: it stays in the item.
      const pipeline = pipelineOver({ key: "rank", query: "SELECT rank, text FROM ranked_src WHERE text NOT LIKE 'hello%'", cursor: "rank" }, "ranked");
      const provider = createInProcessProvider();
      const opts = { db: t.db, pipeline, providers: priced(provider) };
      const first = await runIncrement(opts, { snapshotDir: dir });
      expect(first.read).toBe(24);
      expect(first.cursor!.to).toBe("29");
      await loadSourceTable(t.db, "ranked_src", "id", columns, Array.from({ length: 10 }, (_, i) => row(30 + i)));
      const second = await runIncrement(opts, { snapshotDir: dir });
      expect(second.read).toBe(8);
      expect(second.runs[0]!.items.total).toBe(8);
      expect(provider.calls).toBe(32);
    }, 120_000);
  });

  describe.skipIf(driver.skip)(`a table source read a page at a time, on ${driver.name}`, () => {
    let t: TestDatabase;
    let dir: string;
    afterEach(async () => {
      await t?.drop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("holds one page at a time, splits no tie on the cursor, and writes every row past it once", async () => {
      t = await driver.open();
      dir = mkdtempSync(join(tmpdir(), "sluice-pages-"));
      // 50 rows in waves of 3 sharing a cursor value: pages of 7 end in the middle of a wave.
      const waved = (i: number) => ({ ...row(i), wave: Math.floor(i / 3) });
      await loadSourceTable(t.db, "paged_src", "id", columns, Array.from({ length: 50 }, (_, i) => waved(i)));
      const pipeline = pipelineOver({ key: "id", query: "SELECT id, text, wave FROM paged_src", cursor: "wave" }, "paged");

      const pages: number[] = [];
      const seen: string[] = [];
      const read = await readRowsPast(t.db, { query: "SELECT id, text, wave FROM paged_src", cursor: "wave" }, null, (page) => {
        pages.push(page.length);
        seen.push(...page.map((r) => String(r.row.id)));
      }, { pageRows: 7 });
      expect(read).toBe(50);
      expect(pages).toEqual([7, 7, 7, 7, 7, 7, 7, 1]);
      expect(new Set(seen).size).toBe(50);

      const { increment } = await snapshotNewRows(t.db, pipeline, dir, { pageRows: 7 });
      expect(increment).toMatchObject({ rows: 50, from: null, to: "16" });
      const lines = readFileSync(increment!.snapshot, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { id: string; wave?: number });
      expect(lines.map((l) => l.id).sort()).toEqual(Array.from({ length: 50 }, (_, i) => row(i).id));
      // The cursor column is not part of the item (it is not the key).
      expect(lines.every((l) => l.wave === undefined)).toBe(true);
      // Only the finished snapshot is in the folder: the partial file it was streamed into was renamed.
      expect(readdirSync(join(dir, "paged"))).toEqual([increment!.snapshot.split("/").pop()]);

      // The same rows past the same cursor make the same file, whatever the page size.
      const again = await snapshotNewRows(t.db, pipeline, dir, { pageRows: 1000 });
      expect(again.increment!.snapshot).toBe(increment!.snapshot);

      const provider = createInProcessProvider();
      const opts = { db: t.db, pipeline, providers: priced(provider) };
      const first = await runIncrement(opts, { snapshotDir: dir, pageRows: 7 });
      expect(first.runs[0]!.items.total).toBe(50);
      await loadSourceTable(t.db, "paged_src", "id", columns, Array.from({ length: 10 }, (_, i) => waved(51 + i)));
      const second = await runIncrement(opts, { snapshotDir: dir, pageRows: 7 });
      expect(second.read).toBe(10);
      expect(second.cursor).toEqual({ from: "16", to: "20" });
      expect(provider.calls).toBe(60);

      // A row arriving later at the value the cursor stopped on is past it too, and so is a row there that changes;
      // the rows read at that value are not read again.
      await loadSourceTable(t.db, "paged_src", "id", columns, [{ ...row(70), wave: 20 }, { ...waved(60), text: "refund it, wave 20" }]);
      const third = await runIncrement(opts, { snapshotDir: dir, pageRows: 7 });
      expect(third.read).toBe(2);
      expect(third.cursor).toEqual({ from: "20", to: "20" });
      expect(third.runs[0]!.items.total).toBe(2);
      expect(provider.calls).toBe(62);
      const fourth = await runIncrement(opts, { snapshotDir: dir, pageRows: 7 });
      expect(fourth.runs).toEqual([]);
      expect(fourth.read).toBe(0);
    }, 120_000);

    it("deletes a snapshot once its run has finished, keeps an unfinished run's, and a rerun reads its items from the store", async () => {
      t = await driver.open();
      dir = mkdtempSync(join(tmpdir(), "sluice-prune-"));
      await loadSourceTable(t.db, "kept_src", "id", columns, Array.from({ length: 12 }, (_, i) => row(i)));
      const pipeline = pipelineOver({ key: "id", table: "kept_src", cursor: "updated_at" }, "kept");
      const provider = createInProcessProvider();
      const opts = { db: t.db, pipeline, providers: priced(provider) };
      const snapshots = () => readdirSync(join(dir, "kept")).filter((n) => n.endsWith(".jsonl"));

      // A budget too small for one call: the run stops unfinished, the cursor stays, its snapshot is kept.
      const stopped = await runIncrement({ ...opts, budgetUsd: 1e-9 }, { snapshotDir: dir });
      expect(stopped.runs[0]!.status).toBe("budget_exhausted");
      expect(stopped.cursor!.to).toBeNull();
      expect(stopped.pruned).toBe(0);
      expect(snapshots()).toHaveLength(1);

      // Resumed with a budget, it finishes; the next increment reads the same rows (the cursor had not moved),
      // its run reuses every output, the cursor moves, and both runs' snapshot (one file) goes.
      const resumed = await resumeRun({ ...opts, budgetUsd: 10 }, stopped.runs[0]!.runId);
      expect(resumed.status).toBe("finished");
      const calls = provider.calls;
      const next = await runIncrement(opts, { snapshotDir: dir });
      expect(next.read).toBe(12);
      expect(next.runs[0]!.status).toBe("finished");
      expect(provider.calls).toBe(calls);
      expect(next.pruned).toBe(1);
      expect(snapshots()).toEqual([]);

      // A finished run's increment: its snapshot is deleted as soon as the run finishes.
      await loadSourceTable(t.db, "kept_src", "id", columns, Array.from({ length: 4 }, (_, i) => row(20 + i)));
      const more = await runIncrement(opts, { snapshotDir: dir });
      expect(more.read).toBe(4);
      expect(more.pruned).toBe(1);
      expect(snapshots()).toEqual([]);

      // A rerun of that run with its snapshot gone: its items come from the store.
      const changed = pipelineOver({ key: "id", table: "kept_src", cursor: "updated_at" }, "kept");
      (changed.stages[0] as { prompt: { user: string } }).prompt = { user: "Label this: {{item.text}}" };
      const { run } = await prepareRerun(t.db, changed, { stage: "classify", from: more.runs[0]!.runId });
      const rerun = await resumeRun({ ...opts, pipeline: changed }, run.id);
      expect(rerun.status).toBe("finished");
      expect(rerun.items.total).toBe(4);
      expect(rerun.stages.find((s) => s.id === "classify")!.providerCalls).toBe(4);

      // A snapshot no run was recorded over: kept while fresh (its run may be starting), deleted once a day old.
      const orphan = join(dir, "kept", "0123456789abcdef.jsonl");
      writeFileSync(orphan, `${JSON.stringify(row(99))}\n`);
      expect(await pruneSnapshots(t.db, pipeline, dir)).toEqual([]);
      const twoDaysAgo = new Date(Date.now() - 48 * 3_600_000);
      utimesSync(orphan, twoDaysAgo, twoDaysAgo);
      expect(await pruneSnapshots(t.db, pipeline, dir)).toEqual([orphan]);
      expect(existsSync(orphan)).toBe(false);
    }, 120_000);
  });

  describe.skipIf(driver.skip)(`a glob source, on ${driver.name}`, () => {
    let t: TestDatabase;
    let dir: string;
    afterEach(async () => {
      await t?.drop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("reads each file once, again only when its content changes, and records an empty file with why", async () => {
      t = await driver.open();
      dir = mkdtempSync(join(tmpdir(), "sluice-glob-"));
      // Still for a minute, as far as the sensor can tell (a file that changed in the last 2 s waits).
      const settled = (name: string) => utimesSync(join(dir, name), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
      const write = (name: string, rows: Record<string, unknown>[], still = true) => {
        writeFileSync(join(dir, name), rows.map((r) => JSON.stringify(r)).join("\n"));
        if (still) settled(name);
      };
      write("a.jsonl", Array.from({ length: 5 }, (_, i) => row(i)));
      write("b.jsonl", Array.from({ length: 3 }, (_, i) => row(10 + i)));
      writeFileSync(join(dir, "notes.txt"), "not matched");
      const pipeline = pipelineOver({ key: "id", glob: "*.jsonl" }, "inbox");
      const provider = createInProcessProvider();
      const opts = { db: t.db, pipeline, providers: priced(provider) };

      const first = await runIncrement(opts, { cwd: dir });
      expect(first.runs.map((r) => r.items.total)).toEqual([5, 3]);
      expect(provider.calls).toBe(8);
      expect((await runIncrement(opts, { cwd: dir })).runs).toEqual([]);

      write("b.jsonl", [...Array.from({ length: 3 }, (_, i) => row(10 + i)), row(13)]);
      write("c.jsonl", [row(20)]);
      writeFileSync(join(dir, "empty.jsonl"), "");
      settled("empty.jsonl");
      const second = await runIncrement(opts, { cwd: dir });
      expect(second.runs.map((r) => r.items.total)).toEqual([4, 1]);
      expect(second.skipped).toEqual([{ file: "empty.jsonl", reason: expect.stringMatching(/has no rows/) }]);
      // b.jsonl's three unchanged rows come from stage outputs: only the new row and c.jsonl's are calls.
      expect(provider.calls).toBe(10);
      expect((await runIncrement(opts, { cwd: dir })).runs).toEqual([]);

      // A file that has just changed may still be being written: it waits for a later look, and is read once still.
      write("d.jsonl", [row(30), row(31)], false);
      // However slow the machine: its time is set a minute ahead, so it has changed "just now" at the look.
      utimesSync(join(dir, "d.jsonl"), new Date(Date.now() + 60_000), new Date(Date.now() + 60_000));
      const early = await runIncrement(opts, { cwd: dir });
      expect(early.runs).toEqual([]);
      expect(early.unsettled).toEqual([{ path: "d.jsonl", changedMsAgo: expect.any(Number) }]);
      settled("d.jsonl");
      const later = await runIncrement(opts, { cwd: dir });
      expect(later.runs.map((r) => r.items.total)).toEqual([2]);
      expect(later.unsettled).toEqual([]);
    }, 120_000);
  });
}

describe("source definitions", () => {
  it("refuses a source that cannot be read past a cursor, and sensors without the source they watch", () => {
    expect(() => pipelineOver({ key: "id", table: "notes_src" })).toThrow(/needs cursor/);
    expect(() => pipelineOver({ key: "id", table: "notes src", cursor: "updated_at" })).toThrow(/source.table must be a plain lowercase SQL identifier/);
    expect(() => pipelineOver({ key: "id", query: "DELETE FROM x", cursor: "id" })).toThrow(/must be a SELECT/);
    expect(() => pipelineOver({ key: "id", table: "a", glob: "*.csv", cursor: "id" })).toThrow(/one of table, query or glob/);
    expect(() => definePipeline({ ...pipelineOver({ key: "id", glob: "*.csv" }), onNewRows: true })).toThrow(/onNewRows needs a table or query source/);
    expect(() => definePipeline({ ...pipelineOver({ key: "id", table: "t", cursor: "id" }), onNewFiles: true })).toThrow(/onNewFiles needs a glob source/);
  });
});
