import { isUtf8 } from "node:buffer";
import type { Options } from "csv-parse";
import { parse } from "csv-parse/sync";
import { SluiceError } from "../core/errors.ts";
import type { SourceSpec } from "../core/types.ts";
import { ItemChecks, preview, requiredFields } from "./checks.ts";
import { RAW_PREVIEW_CHARS, type SourceRecord } from "./types.ts";

// csv-parse runs with `encoding: "latin1"`, which maps every byte to one
// character: fields and raw text here are bytes in disguise until decoded, so
// invalid UTF-8 is caught, not replaced with U+FFFD. (`encoding: null` would
// give Buffers, but csv-parse 7 then throws on the first short row with `raw`.)

/** What csv-parse yields per record with these options and `raw: true`. */
export interface ParsedRow {
  record: string[];
  /** The record's text from its first byte to the first byte of its line ending. */
  raw: string;
}

/**
 * csv-parse options shared by the streaming reader and the one-off parse of an
 * unclosed row. Any line ending is a row end, as in a hand-edited file; a stray
 * quote keeps the row's shape (`relax_quotes`) and is reported by
 * `malformedQuoteField`; a short or long row is reported by the row checks, not thrown.
 *
 * @example
 * createReadStream("a.csv").pipe(parse(csvParseOptions()));
 */
export function csvParseOptions(): Options {
  return {
    encoding: "latin1",
    raw: true,
    relax_quotes: true,
    relax_column_count: true,
    // Blank lines come through as rows so that every line ending passes through `raw`.
    skip_empty_lines: false,
    record_delimiter: ["\r\n", "\n", "\r"],
  };
}

const NON_ASCII = /[^\x00-\x7f]/;
const QUOTE = 0x22;
const COMMA = 0x2c;

/**
 * Latin1-carried bytes as UTF-8 text, or undefined when they are not valid UTF-8.
 *
 * @example
 * decodeUtf8("Caf\xc3\xa9"); // "Café"
 * decodeUtf8("Caf\xc3("); // undefined
 */
export function decodeUtf8(bytes: string): string | undefined {
  // Pure ASCII reads the same in latin1 and UTF-8: the common case pays nothing.
  if (!NON_ASCII.test(bytes)) return bytes;
  const buf = Buffer.from(bytes, "latin1");
  return isUtf8(buf) ? buf.toString("utf8") : undefined;
}

const decodeLoose = (bytes: string) => Buffer.from(bytes, "latin1").toString("utf8");

/**
 * Line breaks in a text: `\r\n`, `\n` and a lone `\r` each count as one.
 *
 * @example
 * countBreaks("a\r\nb\nc\rd"); // 3
 */
export function countBreaks(text: string): number {
  let n = 0;
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) n++;
  for (let i = text.indexOf("\r"); i !== -1; i = text.indexOf("\r", i + 1)) if (text.charCodeAt(i + 1) !== 0x0a) n++;
  return n;
}

/**
 * The first column whose text breaks RFC 4180 quoting, or -1. csv-parse, with
 * `relax_quotes`, keeps such a field's quotes as text instead of failing, so
 * the parsed values are laid back over the row's raw text: a well-formed
 * quoted field is exactly `"` + its value with each quote doubled + `"`, an
 * unquoted one is its value and holds no quote, and each is followed by a
 * comma or the row's end. Anything else is a stray quote.
 *
 * @example
 * malformedQuoteField('A,"say ""hi""",b', ["A", 'say "hi"', "b"]); // -1
 * malformedQuoteField('A,"say "hi" now",b', ["A", '"say "hi" now"', "b"]); // 1
 */
export function malformedQuoteField(content: string, fields: readonly string[]): number {
  if (!content.includes('"')) return -1;
  let at = 0;
  for (let i = 0; i < fields.length; i++) {
    const value = fields[i]!;
    if (content.charCodeAt(at) === QUOTE) {
      at += value.length + countQuotes(value) + 2;
      if (content.charCodeAt(at - 1) !== QUOTE) return i;
    } else {
      if (value.includes('"')) return i;
      at += value.length;
    }
    if (i === fields.length - 1 ? at !== content.length : content.charCodeAt(at) !== COMMA) return i;
    at++;
  }
  return -1;
}

function countQuotes(text: string): number {
  let n = 0;
  for (let i = text.indexOf('"'); i !== -1; i = text.indexOf('"', i + 1)) n++;
  return n;
}

/** The header row, and the per-row checks that need it. */
export class CsvTable {
  private readonly header: string[];
  private readonly keyIndex: number;
  private readonly key: string;
  private readonly checks: ItemChecks;

  constructor(path: string, fields: readonly string[], spec: SourceSpec, findDuplicates = true) {
    const names = fields.map(decodeUtf8);
    if (names.some((n) => n === undefined)) throw new SluiceError(`${path}: the header row is not valid UTF-8`);
    this.header = names.map((n) => n!.trim());
    // Two columns of one name: an item would keep one value and lose the other, or have an id its data contradicts.
    const twice = this.header.filter((n, i) => n !== "" && this.header.indexOf(n) !== i);
    if (twice.length > 0) {
      throw new SluiceError(`${path}: the header row names ${[...new Set(twice)].map((n) => JSON.stringify(n)).join(", ")} more than once: ${this.header.join(",")}`);
    }
    this.key = spec.key;
    this.keyIndex = this.header.indexOf(spec.key);
    if (this.keyIndex === -1) {
      throw new SluiceError(`${path}: no column ${JSON.stringify(spec.key)} (source.key) in the header row: ${this.header.join(",")}`);
    }
    const missing = requiredFields(spec.schema).filter((f) => !this.header.includes(f));
    if (missing.length > 0) {
      const list = missing.map((m) => JSON.stringify(m)).join(", ");
      throw new SluiceError(`${path}: the header row has no column ${list}, which the item schema requires`);
    }
    this.checks = new ItemChecks(spec, true, findDuplicates);
  }

  private column(i: number): string {
    return this.header[i] ?? `${i + 1}`;
  }

  /**
   * Checks in the order a person fixes them: quoting, id, encoding, shape,
   * size, schema, duplicates. `content` is the row's raw text without its line ending.
   */
  check(line: number, fields: readonly string[], content: string): SourceRecord {
    const raw = () => decodeLoose(content.slice(0, 4 * RAW_PREVIEW_CHARS));
    const values = fields.map(decodeUtf8);
    const idBytes = fields[this.keyIndex];
    const idText = values[this.keyIndex];
    const itemId = idText?.trim() || undefined;
    const bad = (reason: string): SourceRecord => ({ kind: "bad", line, ...(itemId ? { itemId } : {}), reason, raw: preview(raw()) });

    const badQuote = malformedQuoteField(content, fields);
    if (badQuote !== -1) {
      return bad(`malformed quoting in column ${this.column(badQuote)} (a quote inside a field must be doubled and the field itself quoted)`);
    }
    // An id that is there but not valid UTF-8 is an encoding problem, reported as such below.
    if (idBytes === undefined || (idText !== undefined && !itemId)) return bad(`missing id (column ${JSON.stringify(this.key)} is empty)`);
    const invalid = values.indexOf(undefined);
    if (invalid !== -1) return bad(`invalid UTF-8 in column ${this.column(invalid)}`);
    if (fields.length !== this.header.length) {
      return bad(`expected ${this.header.length} columns (${this.header.join(",")}), got ${fields.length}`);
    }
    const item: Record<string, unknown> = {};
    for (let i = 0; i < this.header.length; i++) item[this.header[i]!] = i === this.keyIndex ? itemId : values[i];
    return this.checks.verdict(line, itemId!, item, raw);
  }

  /**
   * A row whose quoted field never closes: csv-parse reads to the end of the
   * file looking for the closing quote and hands back everything it read.
   * `completeFields` is how many fields were complete before the open quote.
   */
  unclosed(line: number, rest: string, completeFields: number): SourceRecord {
    let itemId: string | undefined;
    if (this.keyIndex < completeFields) {
      // Closing the quote at the end turns the rest into one row whose leading fields are the real ones.
      const [row] = parse(Buffer.from(`${rest}"`, "latin1"), { ...csvParseOptions(), raw: false, to: 1 });
      const id = row?.[this.keyIndex];
      itemId = id === undefined ? undefined : decodeUtf8(id)?.trim() || undefined;
    }
    return {
      kind: "bad",
      line,
      ...(itemId ? { itemId } : {}),
      reason: "a quoted field opened in this row is never closed, so it runs to the end of the file",
      raw: preview(decodeLoose(rest.slice(0, 4 * RAW_PREVIEW_CHARS))),
    };
  }
}
