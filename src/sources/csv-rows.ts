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

/** csv-parse's raw text ends with the first byte of the row's line ending, unless it is the last row. */
export function withoutLineEnding(raw: string): string {
  const last = raw.charCodeAt(raw.length - 1);
  return last === 0x0a || last === 0x0d ? raw.slice(0, -1) : raw;
}

const LINE_BREAK = /\r\n|\n|\r/;

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
  unclosed(line: number, rest: string, completeFields: number): SourceRecord[] {
    const split = this.splitStray(line, rest);
    if (split) return split;
    let itemId: string | undefined;
    if (this.keyIndex < completeFields) {
      // Closing the quote at the end turns the rest into one row whose leading fields are the real ones.
      const [row] = parse(Buffer.from(`${rest}"`, "latin1"), { ...csvParseOptions(), raw: false, to: 1 });
      const id = row?.[this.keyIndex];
      itemId = id === undefined ? undefined : decodeUtf8(id)?.trim() || undefined;
    }
    return [
      {
        kind: "bad",
        line,
        ...(itemId ? { itemId } : {}),
        reason: "a quoted field opened in this row is never closed, so it runs to the end of the file",
        raw: preview(decodeLoose(rest.slice(0, 4 * RAW_PREVIEW_CHARS))),
      },
    ];
  }

  /**
   * A row read over several lines that is malformed (a stray quote, the wrong
   * number of columns, a quote never closed) most likely took the rows below
   * it into a quote opened by mistake. When every line after its first reads
   * as a well-formed row of its own, those rows are checked as such and only
   * the first line is quarantined; otherwise undefined, and the whole text
   * stays one bad row. A quoted field that really spans lines is well formed,
   * so it never comes here.
   */
  splitStray(line: number, content: string): SourceRecord[] | undefined {
    const head = LINE_BREAK.exec(content);
    if (!head) return undefined;
    const first = content.slice(0, head.index);
    let rows: ParsedRow[];
    try {
      rows = parse(Buffer.from(content.slice(head.index + head[0].length), "latin1"), csvParseOptions()) as unknown as ParsedRow[];
    } catch {
      return undefined;
    }
    const parts: { line: number; record: string[]; content: string }[] = [];
    let at = line + 1;
    for (const row of rows) {
      const text = withoutLineEnding(row.raw);
      const start = at;
      at += countBreaks(text) + (text.length < row.raw.length ? 1 : 0);
      if (text === "") continue;
      if (LINE_BREAK.test(text) || row.record.length !== this.header.length || malformedQuoteField(text, row.record) !== -1) return undefined;
      parts.push({ line: start, record: row.record, content: text });
    }
    const [fields] = parse(Buffer.from(`${first}"`, "latin1"), { ...csvParseOptions(), raw: false, to: 1 }) as string[][];
    const id = fields?.[this.keyIndex];
    const itemId = id === undefined ? undefined : decodeUtf8(id)?.trim() || undefined;
    const quoted = first.lastIndexOf('"');
    const column = quoted === -1 ? undefined : this.column(countCommasOutsideQuotes(first.slice(0, quoted)));
    const last = parts.at(-1)?.line ?? line + 1;
    const lines = last > line + 1 ? `lines ${line + 1}-${last} are` : `line ${line + 1} is`;
    return [
      {
        kind: "bad",
        line,
        ...(itemId ? { itemId } : {}),
        reason: `a quote opened${column ? ` in column ${column}` : ""} is not closed on this line (a quote inside a field must be doubled); ${lines} read as rows of their own`,
        raw: preview(decodeLoose(first.slice(0, 4 * RAW_PREVIEW_CHARS))),
      },
      ...parts.map((p) => this.check(p.line, p.record, p.content)),
    ];
  }
}

/** Commas in a row's text that separate fields: those outside double quotes. */
function countCommasOutsideQuotes(text: string): number {
  let n = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) quoted = !quoted;
    else if (c === COMMA && !quoted) n++;
  }
  return n;
}
