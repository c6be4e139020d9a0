import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MESSY_SPEC, writeMessyCsv } from "../../test/fixtures/messy.ts";
import { hashValue } from "../core/hash.ts";
import { emptyStats, readSource, sourceFingerprint, tallySource, type SourceRecord } from "./index.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sluice-csv-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function collect(path: string, spec = MESSY_SPEC): Promise<SourceRecord[]> {
  const out: SourceRecord[] = [];
  for await (const rec of readSource(path, spec)) out.push(rec);
  return out;
}

async function csv(name: string, content: string | Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

const HEADER = "id,subject,body,customer_email,created_at";

describe("readSource on the messy CSV fixture", () => {
  it("quarantines each bad row with its start line and reason, and the counts add up", async () => {
    const { path, rowsRead, expected } = await writeMessyCsv(dir);
    const stats = emptyStats();
    const records: SourceRecord[] = [];
    for await (const rec of readSource(path, MESSY_SPEC, { stats })) records.push(rec);

    const bad = records.filter((r) => r.kind === "bad");
    expect(bad.map((r) => r.reason)).toEqual(expected.reasons);
    expect(bad.map((r) => r.line)).toEqual(expected.quarantinedLines);
    expect(records.filter((r) => r.kind === "duplicate").map((r) => r.line)).toEqual(expected.duplicateLines);
    expect(stats).toEqual({
      rowsRead,
      items: expected.items,
      duplicates: expected.duplicates,
      quarantined: expected.quarantined,
    });
    expect(stats.items + stats.duplicates + stats.quarantined).toBe(rowsRead);
  });

  it("reads BOM, CRLF and quoted newlines into the exact values", async () => {
    const { path } = await writeMessyCsv(dir);
    const items = (await collect(path)).filter((r) => r.kind === "item");
    const first = items[0]!;
    expect(first.line).toBe(2);
    expect(Object.keys(first.item)).toEqual(["id", "subject", "body", "customer_email", "created_at"]);
    expect(first.item).toMatchObject({ id: "M-001", subject: "Export fails, twice", body: 'Hello,\r\nthe export says "failed", twice.\r\nThanks' });
    expect(first.contentHash).toBe(hashValue(first.item));
    expect(first.bytes).toBe(Buffer.byteLength(JSON.stringify(first.item)));
    expect(items.find((r) => r.itemId === "M-010")?.item.subject).toBe("ログインできません");
    expect(items.find((r) => r.itemId === "M-003")?.item.body).toBe("");
    // The id quarantined for bad bytes was never "seen": its clean resend is an item.
    expect(items.find((r) => r.itemId === "M-006")?.item.body).toBe("Café, resent in clean UTF-8.");
  });

  it("keeps a preview of at most ~500 characters of an offending row", async () => {
    const { path } = await writeMessyCsv(dir);
    const big = (await collect(path)).find((r) => r.kind === "bad" && r.itemId === "M-008");
    expect(big?.kind === "bad" && big.raw?.startsWith("M-008,Huge log attached,xxxx")).toBe(true);
    expect(big?.kind === "bad" && big.raw!.length).toBeLessThanOrEqual(501);
  });
});

describe("readSource on hand-made CSV", () => {
  it("dedupes identical rows and quarantines conflicting ones, keeping the first", async () => {
    const path = await csv("dupes.csv", [HEADER, "A,s,b,e,t", "B,s,b,e,t", "A,s,b,e,t", "A,s,other,e,t", "A,s,b,e,t", ""].join("\n"));
    const recs = await collect(path);
    expect(recs.map((r) => r.kind)).toEqual(["item", "item", "duplicate", "bad", "duplicate"]);
    expect(recs[2]).toEqual({ kind: "duplicate", line: 4, itemId: "A", firstLine: 2 });
    expect(recs[3]).toMatchObject({ line: 5, itemId: "A", reason: 'duplicate id "A" with content different from line 2; the first row is kept' });
  });

  it("skips blank lines without counting them, and keeps line numbers right after them", async () => {
    const path = await csv("blank.csv", `${HEADER}\n\nA,s,b,e,t\n\n\nB,s,"two\nlines",e,t\nC,s,b,e,t`);
    const recs = await collect(path);
    expect(recs.map((r) => [r.line, r.kind === "bad" ? r.reason : r.kind])).toEqual([[3, "item"], [6, "item"], [8, "item"]]);
  });

  it("costs one row for a stray quote, and says so when a quote never closes", async () => {
    const path = await csv(
      "quotes.csv",
      `${HEADER}\nA,"say "hi" now",b,e,t\nB,s,b,e,t\nC,s,oh "no",e,t\nF,"odd "quote,b,e,t\nG,s,b,e,t\nD,"open,b,e,t\nE,s,b,e,t\n`,
    );
    const recs = await collect(path);
    expect(recs.map((r) => [r.line, r.kind === "bad" ? r.reason.split(" (")[0] : r.kind])).toEqual([
      [2, "malformed quoting in column subject"],
      [3, "item"],
      [4, "malformed quoting in column body"],
      [5, "malformed quoting in column subject"],
      [6, "item"],
      [7, "a quote opened in column subject is not closed on this line"],
      [8, "item"],
    ]);
    expect(recs.map((r) => r.itemId)).toEqual(["A", "B", "C", "F", "G", "D", "E"]);
    expect(recs.at(-2)).toMatchObject({ raw: 'D,"open,b,e,t', reason: expect.stringMatching(/; line 8 is read as rows of their own$/) });
  });

  it("gives back the rows a stray opening quote took in, in the middle of a file and at its end", async () => {
    // Row B's quote closes at row D's first quote: csv-parse reads B, C and D as one malformed row.
    const middle = await csv("stray-middle.csv", `${HEADER}\nA,s,b,e,t\nB,"open,b,e,t\nC,s,b,e,t\nD,"s",b,e,t\nE,s,b,e,t\n`);
    const recs = await collect(middle);
    expect(recs.map((r) => [r.line, r.itemId, r.kind])).toEqual([
      [2, "A", "item"],
      [3, "B", "bad"],
      [4, "C", "item"],
      [5, "D", "item"],
      [6, "E", "item"],
    ]);
    expect(recs[1]).toMatchObject({ raw: 'B,"open,b,e,t', reason: expect.stringMatching(/^a quote opened in column subject is not closed on this line .*; lines 4-5 are read as rows of their own$/) });
    // A quoted field that really spans lines, in a row that is otherwise wrong, stays one bad row.
    const real = await csv("stray-real.csv", `${HEADER}\nA,"two\nlines",b,e\nB,s,b,e,t\n`);
    expect((await collect(real)).map((r) => [r.line, r.kind === "bad" ? r.reason : r.kind])).toEqual([
      [2, `expected 5 columns (${HEADER}), got 4`],
      [4, "item"],
    ]);
  });

  it("counts every kind of line ending once, inside quotes too, and reads a quoted header after a BOM", async () => {
    const path = await csv(
      "endings.csv",
      '\ufeff"id",subject,body\r\nA,"multi\r\nline, with ""quotes""",x\r\nB,plain,\r\n\r\nC,"bad "quote,y\r\nD,é,"\r"\rE,"lf\nonly",\n\nF,last,no newline',
    );
    const recs = await collect(path, { key: "id" });
    expect(recs.map((r) => [r.itemId, r.line, r.kind])).toEqual([
      ["A", 2, "item"],
      ["B", 4, "item"],
      ["C", 6, "bad"],
      ["D", 7, "item"],
      ["E", 9, "item"],
      ["F", 12, "item"],
    ]);
    const items = new Map(recs.flatMap((r) => (r.kind === "item" ? [[r.itemId, r.item] as const] : [])));
    expect(items.get("A")).toEqual({ id: "A", subject: 'multi\r\nline, with "quotes"', body: "x" });
    expect(items.get("B")).toEqual({ id: "B", subject: "plain", body: "" });
    expect(items.get("D")).toEqual({ id: "D", subject: "é", body: "\r" });
    expect(items.get("E")).toEqual({ id: "E", subject: "lf\nonly", body: "" });
    expect(items.get("F")).toEqual({ id: "F", subject: "last", body: "no newline" });
  });

  it("keeps line numbers exact where a read chunk splits a line ending, a quoted break or a doubled quote", async () => {
    // The reader takes 256 KiB chunks; padding rows put each tricky byte pair across a chunk edge.
    const CHUNK = 256 * 1024;
    const parts: Buffer[] = [Buffer.from("id,body\r\n")];
    let size = parts[0]!.length;
    let line = 2;
    const expected: [string, number, string][] = [];
    const add = (id: string, body: string, ending = "\r\n") => {
      const bytes = Buffer.from(`${id},"${body.replaceAll('"', '""')}"${ending}`);
      expected.push([id, line, body]);
      line += 1 + (body.match(/\r\n|\r|\n/g)?.length ?? 0);
      parts.push(bytes);
      size += bytes.length;
    };
    const fill = (until: number) => {
      const text = "Some ticket text, ".repeat(10);
      for (let i = 0; size < until - 2000; i++) {
        add(`R${size}`, [`${text}\r\n${text}`, `${text}\n"${text}"\r`, text][i % 3]!, ["\r\n", "\n", "\r"][i % 3]);
      }
    };
    // Each pad row is `<id>,"<x…><tail>"\r\n`; choose the x count so the byte at `edge - 1` is the tail's first byte.
    const pad = (id: string, edge: number, tail: string, tailOffsetInRow: (x: number) => number) => {
      const x = edge - 1 - size - tailOffsetInRow(0);
      add(id, "x".repeat(x) + tail);
    };
    fill(CHUNK);
    pad("P1", CHUNK, "", (x) => `P1,"`.length + x + 1); // the row's own \r | \n
    fill(2 * CHUNK);
    pad("P2", 2 * CHUNK, "\r\nafter", (x) => `P2,"`.length + x); // a quoted \r | \n
    fill(3 * CHUNK);
    pad("P3", 3 * CHUNK, '"inner', (x) => `P3,"`.length + x); // the "" of an escaped quote
    add("LAST", "end", "");
    const path = await csv("chunks.csv", Buffer.concat(parts));

    const content = Buffer.concat(parts);
    expect(content.subarray(CHUNK - 1, CHUNK + 1).toString()).toBe("\r\n");
    expect(content.subarray(2 * CHUNK - 1, 2 * CHUNK + 1).toString()).toBe("\r\n");
    expect(content.subarray(3 * CHUNK - 1, 3 * CHUNK + 1).toString()).toBe('""');

    const recs = await collect(path, { key: "id" });
    expect(recs.map((r) => [r.itemId, r.line, r.kind === "item" ? r.item.body : r.kind])).toEqual(
      expected.map(([id, at, body]) => [id, at, body]),
    );
  });

  it("honours source.maxItemBytes and trims the id", async () => {
    const path = await csv("size.csv", `${HEADER}\n  A  ,s,${"y".repeat(100)},e,t\nB,s,b,e,t\n`);
    const recs = await collect(path, { ...MESSY_SPEC, maxItemBytes: 100 });
    const size = JSON.stringify({ id: "A", subject: "s", body: "y".repeat(100), customer_email: "e", created_at: "t" }).length;
    expect(recs[0]).toMatchObject({ kind: "bad", itemId: "A", reason: `item is ${size} bytes, over the 100-byte limit (source.maxItemBytes)` });
    expect(recs[1]).toMatchObject({ kind: "item", itemId: "B", item: { id: "B" }, bytes: 73 });
  });

  it("reports schema errors joined when no column is merely empty", async () => {
    const path = await csv("schema.csv", `id,subject,body,customer_email,created_at,extra\nA,s,b,e,t,x\n`);
    const [rec] = await collect(path);
    expect(rec).toMatchObject({ kind: "bad", reason: 'does not match the item schema: (root): Unrecognized key: "extra"' });
  });

  it("refuses a header that is not UTF-8 or never closes its quotes", async () => {
    const latin1 = await csv("latin1.csv", Buffer.concat([Buffer.from("id,r"), Buffer.from([0xe9]), Buffer.from("sum\nA,b\n")]));
    await expect(collect(latin1, { key: "id" })).rejects.toThrow(/the header row is not valid UTF-8/);
    const open = await csv("openheader.csv", 'id,"subject\nA,b\n');
    await expect(collect(open, { key: "id" })).rejects.toThrow(/the header row opens a quoted field that is never closed/);
  });

  it("refuses a file whose header lacks the key or a required column", async () => {
    const noKey = await csv("nokey.csv", "ticket,subject\nA,s\n");
    await expect(collect(noKey, { key: "id" })).rejects.toThrow(/no column "id" \(source.key\) in the header row: ticket,subject/);
    const noSubject = await csv("nosubject.csv", "id,body,customer_email,created_at\nA,b,e,t\n");
    await expect(collect(noSubject)).rejects.toThrow(/no column "subject", which the item schema requires/);
    await expect(collect(join(dir, "missing.csv"))).rejects.toThrow(/ENOENT/);
  });

  it("refuses a header that names a column twice", async () => {
    // The row's id was one column's value and its data the other's.
    const twice = await csv("twice.csv", "id,id,subject\nT-1,T-2,s\n");
    await expect(collect(twice, { key: "id" })).rejects.toThrow(/the header row names "id" more than once: id,id,subject/);
  });

  it("stops with the signal's reason when aborted", async () => {
    const rows = Array.from({ length: 100 }, (_, i) => `T${i},s,b,e,t`);
    const path = await csv("abort.csv", [HEADER, ...rows].join("\n"));
    const controller = new AbortController();
    let seen = 0;
    await expect(
      (async () => {
        for await (const _ of readSource(path, MESSY_SPEC, { signal: controller.signal })) {
          if (++seen === 10) controller.abort(new Error("stop here"));
        }
      })(),
    ).rejects.toThrow("stop here");
    expect(seen).toBe(10);
  });

  it("fingerprints the file bytes, and tallies without keeping records", async () => {
    const path = await csv("fp.csv", `${HEADER}\nA,s,b,e,t\n`);
    expect(await sourceFingerprint(path)).toBe(createHash("sha256").update(await readFile(path)).digest("hex"));
    expect(await tallySource(path, MESSY_SPEC)).toEqual({ rowsRead: 1, items: 1, duplicates: 0, quarantined: 0 });
  });

  it("picks the format from spec.format or the extension", async () => {
    const path = await csv("data.txt", `${HEADER}\nA,s,b,e,t\n`);
    await expect(collect(path)).rejects.toThrow(/cannot tell the format of .*data.txt/);
    expect(await tallySource(path, { ...MESSY_SPEC, format: "csv" })).toMatchObject({ items: 1 });
  });
});
