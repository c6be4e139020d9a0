import { isUtf8 } from "node:buffer";
import { createReadStream } from "node:fs";
import { SluiceError } from "../core/errors.ts";
import type { SourceSpec } from "../core/types.ts";
import { ItemChecks, preview, requiredFields } from "./checks.ts";
import { CsvScanner, type CsvField, type CsvRecord } from "./csv-scan.ts";
import { RAW_PREVIEW_CHARS, type SourceRecord } from "./types.ts";

const CHUNK_BYTES = 256 * 1024;

/**
 * Stream a CSV file as source records. The header row names the columns;
 * values are strings, the id is trimmed. Holds only the current chunk and the
 * row being read, whatever the file's size.
 *
 * @example
 * for await (const rec of readCsv("tickets.csv", { key: "id" })) {
 *   if (rec.kind === "bad") console.warn(`line ${rec.line}: ${rec.reason}`);
 * }
 */
export async function* readCsv(path: string, spec: SourceSpec, signal?: AbortSignal): AsyncGenerator<SourceRecord> {
  const scanner = new CsvScanner();
  const input = createReadStream(path, { highWaterMark: CHUNK_BYTES });
  let line = 1;
  let table: Table | undefined;
  try {
    let done = false;
    const chunks = input[Symbol.asyncIterator]();
    while (!done) {
      const next = await chunks.next();
      done = next.done === true;
      for (const rec of done ? scanner.end() : scanner.push(next.value as Buffer)) {
        signal?.throwIfAborted();
        const start = line;
        line += rec.breaks;
        // A blank line is not a row: nobody would count it as one.
        if (rec.bytes.length === 0 && !rec.unclosed) continue;
        if (!table) {
          table = new Table(path, rec, spec);
          continue;
        }
        yield table.check(start, rec);
      }
    }
  } finally {
    input.destroy();
  }
}

function fieldText(rec: CsvRecord, f: CsvField): string {
  const text = rec.bytes.toString("utf8", f.start, f.end);
  return f.escaped ? text.replaceAll('""', '"') : text;
}

/** The header row, and the per-row checks that need it. */
class Table {
  private readonly header: string[];
  private readonly keyIndex: number;
  private readonly key: string;
  private readonly checks: ItemChecks;

  constructor(path: string, rec: CsvRecord, spec: SourceSpec) {
    if (!isUtf8(rec.bytes)) throw new SluiceError(`${path}: the header row is not valid UTF-8`);
    this.header = rec.fields.map((f) => fieldText(rec, f).trim());
    this.key = spec.key;
    this.keyIndex = this.header.indexOf(spec.key);
    if (this.keyIndex === -1) {
      throw new SluiceError(`${path}: no column ${JSON.stringify(spec.key)} (source.key) in the header row: ${this.header.join(",")}`);
    }
    const missing = requiredFields(spec.schema).filter((f) => !this.header.includes(f));
    if (missing.length > 0) {
      const names = missing.map((m) => JSON.stringify(m)).join(", ");
      throw new SluiceError(`${path}: the header row has no column ${names}, which the item schema requires`);
    }
    this.checks = new ItemChecks(spec, true);
  }

  private column(i: number): string {
    return this.header[i] ?? `${i + 1}`;
  }

  /** Checks in the order a person fixes them: parse, id, encoding, shape, size, schema, duplicates. */
  check(line: number, rec: CsvRecord): SourceRecord {
    const raw = () => rec.bytes.toString("utf8", 0, Math.min(rec.bytes.length, 4 * RAW_PREVIEW_CHARS));
    const utf8 = isUtf8(rec.bytes);
    const idField = rec.fields[this.keyIndex];
    const idValid = !idField || utf8 || isUtf8(rec.bytes.subarray(idField.start, idField.end));
    const itemId = idField && idValid ? fieldText(rec, idField).trim() || undefined : undefined;
    const bad = (reason: string): SourceRecord => ({ kind: "bad", line, ...(itemId ? { itemId } : {}), reason, raw: preview(raw()) });

    if (rec.unclosed) return bad("a quoted field opened in this row is never closed, so it runs to the end of the file");
    if (rec.badQuoteField !== -1) {
      return bad(`malformed quoting in column ${this.column(rec.badQuoteField)} (a quote inside a field must be doubled and the field itself quoted)`);
    }
    if (idValid && !itemId) return bad(`missing id (column ${JSON.stringify(this.key)} is empty)`);
    if (!utf8) {
      const at = rec.fields.findIndex((f) => !isUtf8(rec.bytes.subarray(f.start, f.end)));
      return bad(`invalid UTF-8 in column ${this.column(at)}`);
    }
    if (rec.fields.length !== this.header.length) {
      return bad(`expected ${this.header.length} columns (${this.header.join(",")}), got ${rec.fields.length}`);
    }
    const item: Record<string, unknown> = {};
    for (let i = 0; i < this.header.length; i++) {
      item[this.header[i]!] = i === this.keyIndex ? itemId : fieldText(rec, rec.fields[i]!);
    }
    return this.checks.verdict(line, itemId!, item, raw);
  }
}
