import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { countBreaks, csvParseOptions, decodeUtf8, malformedQuoteField } from "./csv-rows.ts";

/** One row through csv-parse with the reader's options: its fields and its text without the line ending. */
function parseRow(text: string): { fields: string[]; content: string } {
  const rows = parse(Buffer.from(text, "latin1"), csvParseOptions());
  expect(rows).toHaveLength(1);
  const row = rows[0] as unknown as { record: string[]; raw: string };
  return { fields: row.record, content: row.raw };
}

const badColumn = (text: string) => {
  const { fields, content } = parseRow(text);
  return malformedQuoteField(content, fields);
};

describe("malformedQuoteField", () => {
  it("passes well-formed rows, whatever their quoting", () => {
    for (const text of [
      "a,b,c",
      'A,"multi\r\nline, with ""quotes""",x',
      '"",,""',
      '"""",x',
      '"a""b""",y',
      '"\r",z',
      "only",
    ]) {
      expect(badColumn(text), text).toBe(-1);
    }
  });

  it("names the first column with a stray quote, however csv-parse relaxed it", () => {
    expect(badColumn('A,"say "hi" now",b')).toBe(1);
    expect(badColumn('C,"bad "quote,y')).toBe(1);
    expect(badColumn('C,s,oh "no",e')).toBe(2);
    expect(badColumn('"closed" then text,b')).toBe(0);
    expect(badColumn('A,"x" ,b')).toBe(1);
    expect(badColumn('A,b,"a""b"c')).toBe(2);
    expect(badColumn('A,"ok",x"')).toBe(2);
  });

  it("passes every row a correct writer produces (values with quotes, commas and line breaks)", () => {
    const pieces = ["", "a", '"', '""', ",", "\r\n", "\r", "\n", " ", "é"];
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let n = 0; n < 300; n++) {
      const values = Array.from({ length: 1 + (next() % 4) }, () =>
        Array.from({ length: next() % 5 }, () => pieces[next() % pieces.length]).join(""),
      );
      const quoteAll = next() % 2 === 0;
      const cells = values.map((v) => (quoteAll || /[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v));
      const text = Buffer.from(cells.join(","), "utf8").toString("latin1");
      // A lone empty unquoted value is a blank line, not a row.
      if (text === "") continue;
      const { fields, content } = parseRow(text);
      expect(fields.map((f) => decodeUtf8(f))).toEqual(values);
      expect(malformedQuoteField(content, fields), JSON.stringify(text)).toBe(-1);
    }
  });
});

describe("countBreaks", () => {
  it("counts \\r\\n, \\n and a lone \\r as one break each", () => {
    expect(countBreaks("a\r\nb\nc\rd\r")).toBe(4);
    expect(countBreaks("\r\r\n\n")).toBe(3);
    expect(countBreaks("no breaks")).toBe(0);
  });
});

describe("decodeUtf8", () => {
  it("decodes valid UTF-8 carried as latin1 and refuses invalid bytes", () => {
    const latin1 = (b: Buffer) => b.toString("latin1");
    expect(decodeUtf8("plain")).toBe("plain");
    expect(decodeUtf8(latin1(Buffer.from("ログイン, Café")))).toBe("ログイン, Café");
    expect(decodeUtf8(latin1(Buffer.from([0x43, 0x61, 0x66, 0xc3, 0x28])))).toBeUndefined();
    expect(decodeUtf8(latin1(Buffer.from([0xff])))).toBeUndefined();
    // A truncated multi-byte sequence is invalid too.
    expect(decodeUtf8(latin1(Buffer.from("é").subarray(0, 1)))).toBeUndefined();
  });
});
