import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MESSY_SPEC } from "../../test/fixtures/messy.ts";
import { hashValue } from "../core/hash.ts";
import { emptyStats, readSource, type SourceRecord } from "./index.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sluice-jsonl-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ok = (id: unknown, body = "b") => JSON.stringify({ id, subject: "s", body, customer_email: "e", created_at: "t" });

async function read(name: string, content: string | Buffer, spec = MESSY_SPEC) {
  const path = join(dir, name);
  await writeFile(path, content);
  const stats = emptyStats();
  const records: SourceRecord[] = [];
  for await (const rec of readSource(path, spec, { stats })) records.push(rec);
  return { records, stats };
}

const summary = (records: SourceRecord[]) => records.map((r) => [r.line, r.kind === "bad" ? r.reason : r.kind]);

describe("readSource on JSON Lines", () => {
  it("quarantines unparseable, non-object and id-less lines with the line number and reason", async () => {
    const lines = [
      ok("A"),
      "",
      "{not json",
      "[1,2]",
      '"just a string"',
      "null",
      JSON.stringify({ subject: "s", body: "b", customer_email: "e", created_at: "t" }),
      ok("   "),
      ok({ nested: true }),
      ok("B"),
    ];
    const { records, stats } = await read("errors.jsonl", lines.join("\n"));
    expect(summary(records)).toEqual([
      [1, "item"],
      // The parser's wording varies across Node versions; its position does not.
      [3, expect.stringMatching(/^invalid JSON: .*position 1/)],
      [4, "expected a JSON object, got an array"],
      [5, "expected a JSON object, got a string"],
      [6, "expected a JSON object, got null"],
      [7, 'missing id (field "id" is absent)'],
      [8, 'missing id (field "id" is empty)'],
      [9, 'id field "id" must be a string or a number, got an object'],
      [10, "item"],
    ]);
    expect(records[1]).toMatchObject({ raw: "{not json" });
    expect(stats).toEqual({ rowsRead: 9, items: 2, duplicates: 0, quarantined: 7 });
  });

  it("handles a BOM and CRLF, trims the id, and dedupes identical vs conflicting lines", async () => {
    const content = `\ufeff${ok(" A ")}\r\n${ok("B")}\r\n${ok("A")}\r\n${ok("A", "changed")}\r\n`;
    const { records } = await read("dupes.ndjson", content);
    expect(summary(records)).toEqual([
      [1, "item"],
      [2, "item"],
      [3, "duplicate"],
      [4, 'duplicate id "A" with content different from line 1; the first row is kept'],
    ]);
    const first = records[0]!;
    expect(first.kind === "item" && first.item.id).toBe("A");
    expect(first.kind === "item" && first.contentHash).toBe(hashValue({ id: "A", subject: "s", body: "b", customer_email: "e", created_at: "t" }));
  });

  it("catches invalid UTF-8 instead of replacing it, and keeps good non-ASCII text", async () => {
    const bad = Buffer.concat([Buffer.from('{"id":"X","subject":"s","body":"caf'), Buffer.from([0xe9]), Buffer.from('","customer_email":"e","created_at":"t"}\n')]);
    const { records } = await read("utf8.jsonl", Buffer.concat([bad, Buffer.from(`${ok("Y", "café ログイン")}\n`)]));
    expect(summary(records)).toEqual([
      [1, "invalid UTF-8 (the line is not valid UTF-8 text)"],
      [2, "item"],
    ]);
    expect(records[1]!.kind === "item" && records[1]!.item.body).toBe("café ログイン");
  });

  it("applies the schema (no CSV empty-cell rule) and the size limit", async () => {
    const lines = [ok("A"), JSON.stringify({ id: "B", subject: "", customer_email: "e", created_at: "t" }), ok("C", "x".repeat(300))];
    const { records } = await read("schema.jsonl", lines.join("\n"), { ...MESSY_SPEC, maxItemBytes: 200 });
    expect(summary(records)).toEqual([
      [1, "item"],
      [2, "does not match the item schema: subject: Too small: expected string to have >=1 characters"],
      [3, `item is ${Buffer.byteLength(ok("C", "x".repeat(300)))} bytes, over the 200-byte limit (source.maxItemBytes)`],
    ]);
  });

  it("accepts numeric ids as strings and fails loudly on a missing file", async () => {
    const { records } = await read("numeric.jsonl", `${JSON.stringify({ id: 42, name: "x" })}\n`, { key: "id" });
    expect(records[0]).toMatchObject({ kind: "item", itemId: "42", item: { id: 42 } });
    const missing = readSource(join(dir, "nope.jsonl"), { key: "id" });
    await expect(missing.next()).rejects.toThrow(/ENOENT/);
  });
});
