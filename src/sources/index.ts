import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { extname } from "node:path";
import { SluiceError } from "../core/errors.ts";
import type { SourceSpec } from "../core/types.ts";
import { readCsv } from "./csv.ts";
import { readJsonl } from "./jsonl.ts";
import { emptyStats, type ReadSourceOptions, type SourceRecord, type SourceStats } from "./types.ts";

export { conflictingDuplicateReason, duplicateReason, preview } from "./checks.ts";
export { readCsv } from "./csv.ts";
export { readJsonl } from "./jsonl.ts";
export {
  DEFAULT_MAX_ITEM_BYTES,
  emptyStats,
  type ReadSourceOptions,
  type SourceRecord,
  type SourceRecordKind,
  type SourceStats,
} from "./types.ts";

const EXTENSIONS: Record<string, "csv" | "jsonl"> = { ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl" };

/**
 * `spec.format`, else the file extension (.csv, .jsonl, .ndjson).
 *
 * @example
 * sourceFormat("tickets.ndjson", { key: "id" }); // "jsonl"
 */
export function sourceFormat(path: string, spec: SourceSpec): "csv" | "jsonl" {
  if (spec.format) return spec.format;
  const format = EXTENSIONS[extname(path).toLowerCase()];
  if (!format) {
    throw new SluiceError(`cannot tell the format of ${path}: use a .csv, .jsonl or .ndjson file, or set source.format`);
  }
  return format;
}

/**
 * Stream the items of an input file, one record per data row, in file order:
 * `item` (good, first time seen), `duplicate` (same id and same content as an
 * earlier row) or `bad` (quarantined, with a reason a person can act on).
 * Pass `options.stats` to have the counts kept up to date as you consume.
 *
 * @example
 * const stats = emptyStats();
 * for await (const rec of readSource("examples/data/tickets.csv", { key: "id" }, { stats })) {
 *   if (rec.kind === "bad") console.warn(`line ${rec.line}: ${rec.reason}`);
 * }
 * // stats.rowsRead === stats.items + stats.duplicates + stats.quarantined
 */
export async function* readSource(
  path: string,
  spec: SourceSpec,
  options: ReadSourceOptions = {},
): AsyncGenerator<SourceRecord> {
  const stats = options.stats ?? emptyStats();
  const find = options.findDuplicates ?? true;
  const records = sourceFormat(path, spec) === "csv" ? readCsv(path, spec, options.signal, find) : readJsonl(path, spec, options.signal, find);
  for await (const rec of records) {
    stats.rowsRead++;
    if (rec.kind === "item") stats.items++;
    else if (rec.kind === "duplicate") stats.duplicates++;
    else stats.quarantined++;
    yield rec;
  }
}

/**
 * Check that a source can be read and holds at least one data row, reading
 * no further than its first: an empty or header-only file, or one that
 * cannot be read at all (not UTF-8, an unknown format), is refused with a
 * one-line reason before anything is recorded.
 *
 * @example
 * await checkSource("tickets.csv", { key: "id" }); // throws SluiceError for a header-only file
 */
export async function checkSource(path: string, spec: SourceSpec): Promise<void> {
  const records = readSource(path, spec);
  try {
    const first = await records.next();
    if (first.done) throw new SluiceError(`input ${path} has no rows: nothing to run`);
  } finally {
    await records.return(undefined);
  }
}

/**
 * Read a whole source only to count it (nothing is kept).
 *
 * @example
 * const { rowsRead, quarantined } = await tallySource("tickets.csv", { key: "id" });
 */
export async function tallySource(path: string, spec: SourceSpec, options: Omit<ReadSourceOptions, "stats"> = {}): Promise<SourceStats> {
  const stats = emptyStats();
  for await (const _ of readSource(path, spec, { ...options, stats }));
  return stats;
}

/**
 * sha256 (hex) of the file's bytes, streamed: what a run stores to tell later
 * whether it read the same input.
 *
 * @example
 * const fingerprint = await sourceFingerprint("examples/data/tickets.csv");
 */
export async function sourceFingerprint(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
