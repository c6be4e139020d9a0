import { describe, expect, it } from "vitest";
import { countBreaks, CsvScanner, type CsvRecord } from "./csv-scan.ts";

/** What a record means, independent of which buffer its bytes live in. */
function view(rec: CsvRecord) {
  return {
    fields: rec.fields.map((f) => {
      const text = rec.bytes.toString("utf8", f.start, f.end);
      return f.escaped ? text.replaceAll('""', '"') : text;
    }),
    breaks: rec.breaks,
    badQuoteField: rec.badQuoteField,
    unclosed: rec.unclosed,
  };
}

function scanChunks(chunks: Buffer[]) {
  const scanner = new CsvScanner();
  const out = chunks.flatMap((c) => scanner.push(c).map(view));
  return [...out, ...scanner.end().map(view)];
}

const SAMPLE = Buffer.from(
  '\ufeffid,subject,body\r\nA,"multi\r\nline, with ""quotes""",x\r\nB,plain,\r\n\r\nC,"bad "quote,y\r\nD,é,"\r"\rE,last,no newline',
);

describe("CsvScanner", () => {
  it("splits fields and records per RFC 4180, counting every kind of line break once", () => {
    expect(scanChunks([SAMPLE])).toEqual([
      { fields: ["id", "subject", "body"], breaks: 1, badQuoteField: -1, unclosed: false },
      { fields: ["A", 'multi\r\nline, with "quotes"', "x"], breaks: 2, badQuoteField: -1, unclosed: false },
      { fields: ["B", "plain", ""], breaks: 1, badQuoteField: -1, unclosed: false },
      { fields: [""], breaks: 1, badQuoteField: -1, unclosed: false },
      { fields: ["C", "bad \"quote", "y"], breaks: 1, badQuoteField: 1, unclosed: false },
      { fields: ["D", "é", "\r"], breaks: 2, badQuoteField: -1, unclosed: false },
      { fields: ["E", "last", "no newline"], breaks: 0, badQuoteField: -1, unclosed: false },
    ]);
  });

  it("gives the same records wherever the chunks are cut", () => {
    const whole = scanChunks([SAMPLE]);
    for (let cut = 1; cut < SAMPLE.length; cut++) {
      expect(scanChunks([SAMPLE.subarray(0, cut), SAMPLE.subarray(cut)]), `cut at ${cut}`).toEqual(whole);
    }
    expect(scanChunks([...SAMPLE].map((b) => Buffer.from([b])))).toEqual(whole);
  });

  it("reports a quote that never closes as one unclosed record", () => {
    const records = scanChunks([Buffer.from('id,b\nA,"open\nB,x\n')]);
    expect(records[1]).toEqual({ fields: ["A", "open\nB,x\n"], breaks: 2, badQuoteField: -1, unclosed: true });
  });

  it("counts \\r\\n, \\n and a lone \\r as one break each", () => {
    expect(countBreaks(Buffer.from("a\r\nb\nc\rd\r"))).toBe(4);
    expect(countBreaks(Buffer.from("no breaks"))).toBe(0);
  });
});
