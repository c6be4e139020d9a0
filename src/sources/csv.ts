import type { ReadStream } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { parse } from "csv-parse";
import { SluiceError } from "../core/errors.ts";
import type { SourceSpec } from "../core/types.ts";
import { countBreaks, csvParseOptions, CsvTable, withoutLineEnding, type ParsedRow } from "./csv-rows.ts";
import type { SourceRecord } from "./types.ts";

const CHUNK_BYTES = 256 * 1024;
const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/**
 * Stream a CSV file through csv-parse as source records. The header row names
 * the columns; values are strings, the id is trimmed. Holds only the current
 * chunk and the row being read, whatever the file's size.
 *
 * Every row carries the line it starts on, counted from the row's raw text
 * (`\r\n`, `\n` or a lone `\r` is one line, inside quotes too), so it stays
 * exact where csv-parse's own `info.lines` drifts on quoted line breaks.
 *
 * @example
 * for await (const rec of readCsv("tickets.csv", { key: "id" })) {
 *   if (rec.kind === "bad") console.warn(`line ${rec.line}: ${rec.reason}`);
 * }
 */
export async function* readCsv(path: string, spec: SourceSpec, signal?: AbortSignal, findDuplicates = true): AsyncGenerator<SourceRecord> {
  const file = await open(path);
  let input: ReadStream | undefined;
  // With relax_quotes and relax_column_count, the one record csv-parse can skip
  // is a quoted field still open at the end of the input, so it is always the last.
  let unclosed: { rest: string; completeFields: number } | undefined;
  const parser = parse({
    ...csvParseOptions(),
    skip_records_with_error: true,
    on_skip: (err, raw) => {
      unclosed = { rest: raw ?? "", completeFields: typeof err?.index === "number" ? err.index : 0 };
      return undefined;
    },
  });
  try {
    // csv-parse's `bom` option would switch it to decoding UTF-8 (replacing bad
    // bytes), so the mark is skipped here by starting the read after it.
    input = file.createReadStream({ start: await bomLength(file), highWaterMark: CHUNK_BYTES });
    input.once("error", (err) => parser.destroy(err));
    input.pipe(parser);

    let line = 1;
    let table: CsvTable | undefined;
    for await (const row of parser as AsyncIterable<ParsedRow>) {
      signal?.throwIfAborted();
      const start = line;
      const content = withoutLineEnding(row.raw);
      line += countBreaks(content) + (content.length < row.raw.length ? 1 : 0);
      // A blank line is not a row: nobody would count it as one.
      if (content === "") continue;
      if (!table) {
        table = new CsvTable(path, row.record, spec, findDuplicates);
        continue;
      }
      const record = table.check(start, row.record, content);
      if (record.kind === "bad") yield* table.splitStray(start, content) ?? [record];
      else yield record;
    }
    if (unclosed) {
      signal?.throwIfAborted();
      if (!table) throw new SluiceError(`${path}: the header row opens a quoted field that is never closed`);
      yield* table.unclosed(line, unclosed.rest, unclosed.completeFields);
    }
  } finally {
    // The stream owns the file handle once it exists, and closes it when destroyed.
    if (input) input.destroy();
    else await file.close();
    parser.destroy();
  }
}

async function bomLength(file: FileHandle): Promise<number> {
  const head = Buffer.alloc(UTF8_BOM.length);
  const { bytesRead } = await file.read(head, 0, head.length, 0);
  return bytesRead === UTF8_BOM.length && head.equals(UTF8_BOM) ? UTF8_BOM.length : 0;
}
