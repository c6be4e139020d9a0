import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { definePipeline, defineStage, stageVersion, versionParts } from "../src/core/define.ts";
import { DefinitionError } from "../src/core/errors.ts";
import type { CommitStage, JsonSchema } from "../src/core/types.ts";
import { newRunId } from "../src/engine/runs.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { revertRun } from "../src/store/ledger.ts";
import { latestFinishedRun } from "../src/store/runs.ts";
import { deadLetters, dumpTarget } from "../src/store/reports.ts";
import { targetColumnsOf } from "../src/store/targets.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import { singleProvider } from "../src/testing/harness.ts";
import mini from "./fixtures/pipelines/mini.ts";

/**
 * A commit stage that declares its columns gets a table of typed columns (in
 * another schema, here), migrated as columns are added; rows that do not fit
 * fail alone, with a reason; the ledger and revert work on it as on `data jsonb`.
 */
const TABLE = "analytics.mini_labels";
const columns = (extra: Record<string, JsonSchema> = {}): JsonSchema => ({
  type: "object",
  required: ["id", "category"],
  properties: { id: { type: "string" }, category: { type: "string", enum: ["billing", "bug", "other"] }, text: { type: "string" }, ...extra },
});

function typed(cols: JsonSchema, row?: CommitStage["row"]) {
  const commit = mini.stages.at(-1) as CommitStage;
  return definePipeline({
    ...mini,
    id: "mini-typed",
    stages: [
      ...mini.stages.slice(0, -1),
      defineStage({ ...commit, target: { table: TABLE, key: "id", columns: cols }, row: row ?? commit.row }),
    ],
  });
}

/** What mini's `shout` stage hands on (mini defines its stages inline, so its outputs are `unknown` to a row mapper). */
type Shout = { text: string; category: string };

const items = Array.from({ length: 60 }, (_, i) => ({ id: `t${String(i).padStart(3, "0")}`, text: ["invoice charged twice", "the app crashes", "hello", "refund please"][i % 4]! }));

function inputFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), "sluice-typed-")), "items.jsonl");
  writeFileSync(file, items.map((i) => JSON.stringify(i)).join("\n"));
  return file;
}

const providers = () => singleProvider(createInProcessProvider());

describe("a typed target's definition", () => {
  it("refuses columns that cannot be a table", () => {
    expect(() => typed({ type: "object", properties: { category: { type: "string" } } })).toThrow(/must include the key "id"/);
    expect(() => typed(columns({ status: { type: "string" } }))).toThrow(/a name sluice keeps for itself/);
    expect(() => typed(columns({ "Bad-Name": { type: "string" } }))).toThrow(DefinitionError);
    expect(() => typed(columns({ either: { type: ["string", "number"] } }))).toThrow(/needs one JSON type/);
  });
});

describe("a target in another database's definition", () => {
  const at = (url: string | undefined) => {
    const commit = mini.stages.at(-1) as CommitStage;
    return definePipeline({ ...mini, id: "mini-elsewhere", stages: [...mini.stages.slice(0, -1), defineStage({ ...commit, target: { ...commit.target, url } })] });
  };
  it("refuses a URL that is not a Postgres database's, or that is unset, without echoing it", () => {
    expect(() => at(undefined)).toThrow(/target.url is undefined \(is the environment variable it reads set\?\)/);
    expect(() => at("")).toThrow(/target.url is empty/);
    expect(() => at("mysql://u:pw@host/db")).toThrow(/must be a Postgres URL \(postgres:\/\/ or postgresql:\/\/\), not mysql:/);
    expect(() => at("postgres://u:pw@host:5432")).toThrow(/names no database/);
    expect(() => at("not a url at all, pw")).toThrow(/is not a URL/);
    for (const bad of ["mysql://u:hunter2@host/db", "postgres://u:hunter2@host:5432", "hunter2"]) {
      try {
        at(bad);
      } catch (err) {
        expect((err as Error).message).not.toContain("hunter2");
      }
    }
  });
  it("versions the stage by where the target lives, not by its password", () => {
    const version = (url: string) => stageVersion(at(url).stages.at(-1)!);
    const parts = versionParts(at("postgres://writer:hunter2@db.internal:5432/crm").stages.at(-1)!);
    expect(JSON.stringify(parts)).not.toContain("hunter2");
    expect((parts.target as { url: string }).url).toBe("postgres://writer@db.internal:5432/crm");
    expect(version("postgres://writer:hunter2@db.internal:5432/crm")).toBe(version("postgres://writer:rotated@db.internal:5432/crm"));
    expect(version("postgres://writer:hunter2@db.internal:5432/crm")).not.toBe(version("postgres://writer:hunter2@db.internal:5432/warehouse"));
    // A target without a URL keeps the version it had before URLs existed.
    expect(versionParts(mini.stages.at(-1)!).target).toEqual((mini.stages.at(-1) as CommitStage).target);
  });
});

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`a typed target in a second schema, on ${driver.name}`, () => {
    let t: TestDatabase;
    afterEach(async () => {
      await t?.drop();
    });

    it("is created with typed columns, gains new ones, refuses a changed type, and reverts", async () => {
      t = await driver.open();
      const input = inputFile();
      const first = await runPipeline({ db: t.db, pipeline: typed(columns()), providers: providers() }, input);
      expect(first.status).toBe("finished");
      const cols = new Map((await targetColumnsOf(t.db, TABLE)).map((c) => [c.column_name, c.data_type]));
      expect(cols.get("category")).toBe("text");
      expect(cols.has("data")).toBe(false);
      const afterFirst = await dumpTarget(t.db, TABLE);
      expect(afterFirst.length).toBe(first.items.byStatus.committed);
      expect(JSON.parse(afterFirst[0]!)).toMatchObject({ id: expect.any(String), category: expect.stringMatching(/billing|bug/), status: "active" });

      // A new column (and a row mapper that fills it): added in place, filled by the next run.
      const withLength = typed(columns({ length: { type: "integer" } }), ({ itemId, outputs }) => ({ id: itemId, ...(outputs.shout as Shout), length: (outputs.shout as Shout).text.length }));
      const second = await runPipeline({ db: t.db, pipeline: withLength, providers: providers() }, input);
      expect((await targetColumnsOf(t.db, TABLE)).find((c) => c.column_name === "length")?.data_type).toBe("bigint");
      const rows = (await dumpTarget(t.db, TABLE)).map((r) => JSON.parse(r) as { id: string; length: number; text: string });
      expect(rows.every((r) => r.length === r.text.length)).toBe(true);

      // The same column as another type is refused, with what to do.
      const changed = typed(columns({ length: { type: "string" } }), ({ itemId, outputs }) => ({ id: itemId, ...(outputs.shout as Shout), length: "x" }));
      await expect(runPipeline({ db: t.db, pipeline: changed, providers: providers() }, input)).rejects.toThrow(/column length is bigint, the commit stage declares text/);

      // Reverting the second run puts every row back as the first left it, in the typed table.
      await revertRun(t.db, second.runId, { revertRunId: newRunId(), pipeline: "mini-typed" });
      // A revert runs no stage: the newest run a rerun starts from is still the second.
      expect((await latestFinishedRun(t.db, "mini-typed"))?.id).toBe(second.runId);
      const restored = (await dumpTarget(t.db, TABLE)).map((r) => JSON.parse(r) as Record<string, unknown>);
      const firstRows = afterFirst.map((r) => JSON.parse(r) as Record<string, unknown>);
      // The added column stays (as null): the rows are otherwise the first run's, to the byte.
      expect(restored.map(({ length, ...rest }) => [length, rest])).toEqual(firstRows.map((r) => [null, r]));
    });

    it("fails a row that does not fit its columns, alone and with the reason", async () => {
      t = await driver.open();
      // The commit row's text is upper-cased by the stage before: only the longest texts do not fit.
      const strict = typed(columns({ text: { type: "string", maxLength: 15 } }));
      const summary = await runPipeline({ db: t.db, pipeline: strict, providers: providers() }, inputFile());
      const longOnes = items.filter((i) => i.text.length > 15).length;
      expect(summary.stages.find((s) => s.id === "commit")!.failed).toBeGreaterThan(0);
      expect(summary.stages.find((s) => s.id === "commit")!.failed).toBeLessThanOrEqual(longOnes);
      const rows = (await dumpTarget(t.db, TABLE)).map((r) => JSON.parse(r) as { text: string });
      expect(summary.items.byStatus.committed).toBeGreaterThan(0);
      expect(rows.length).toBe(summary.items.byStatus.committed);
      expect(rows.every((r) => r.text.length <= 15)).toBe(true);
      const letters = await deadLetters(t.db, summary.runId);
      expect(letters.length).toBe(summary.stages.find((s) => s.id === "commit")!.failed);
      expect(letters.every((d) => /commit row does not fit the columns of analytics\.mini_labels: text: /.test(d.error_message ?? ""))).toBe(true);
    });
  });
}
