import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { definePipeline, defineStage } from "../src/core/define.ts";
import { targetColumns } from "../src/core/target.ts";
import type { JsonSchema, PipelineDef } from "../src/core/types.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { runIncrement } from "../src/sensors/increments.ts";
import { dumpTarget } from "../src/store/reports.ts";
import { loadSourceTable, sourceCursor } from "../src/store/sources.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import { singleProvider } from "../src/testing/harness.ts";

/**
 * Table and glob sources read only what is new: a table source past the
 * cursor its last finished run reached, a glob source the files it has not
 * read. What did not change is not queued, so it is not paid for either.
 */

const rowSchema: JsonSchema = {
  type: "object",
  properties: { id: { type: "string" }, text: { type: "string" }, rank: { type: "integer" } },
};
const columns = targetColumns(rowSchema, "id");

const labelSchema: JsonSchema = {
  type: "object",
  additionalProperties: false,
  required: ["category", "confidence"],
  properties: { category: { enum: ["billing", "bug", "other"] }, confidence: { type: "number" } },
};

function pipelineOver(source: PipelineDef["source"], id = "notes"): PipelineDef {
  return definePipeline({
    id,
    source,
    stages: [
      defineStage({ id: "classify", kind: "classify", model: "gpt-4o-mini", prompt: { user: "{{item.text}}" }, output: { name: "Label", schema: labelSchema } }),
      defineStage({ id: "commit", kind: "commit", target: { table: `${id.replace(/-/g, "_")}_out`, key: "id" }, row: ({ itemId, outputs }) => ({ id: itemId, category: (outputs.classify as { category: string }).category }) }),
    ],
  });
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
      expect(await sourceCursor(t.db, pipeline.id, "table:notes_src")).toBe(first.cursor!.to);
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
      expect(await sourceCursor(t.db, pipeline.id, "table:notes_src")).toBe(second.cursor!.to);
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
      const write = (name: string, rows: Record<string, unknown>[]) => writeFileSync(join(dir, name), rows.map((r) => JSON.stringify(r)).join("\n"));
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
      const second = await runIncrement(opts, { cwd: dir });
      expect(second.runs.map((r) => r.items.total)).toEqual([4, 1]);
      expect(second.skipped).toEqual([{ file: "empty.jsonl", reason: expect.stringMatching(/has no rows/) }]);
      // b.jsonl's three unchanged rows come from stage outputs: only the new row and c.jsonl's are calls.
      expect(provider.calls).toBe(10);
      expect((await runIncrement(opts, { cwd: dir })).runs).toEqual([]);
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
