import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hashValue, sha256 } from "../core/hash.ts";
import type { PipelineDef } from "../core/types.ts";
import type { Database } from "../store/database.ts";
import { readRowsPast, sourceCursor, type RowSourceSpec } from "../store/sources.ts";

/**
 * The rows of a table or query source past the pipeline's cursor, written to
 * a JSONL file: the input of the run that takes them. Only store reads and a
 * file write, so both the local sensors (`increments.ts`) and the Trigger.dev
 * sensor task use it.
 */

export interface RowIncrement {
  /** The name the cursor is kept under (`table:<name>` or `query:<hash>`). */
  source: string;
  from: string | null;
  to: string;
  rows: number;
  /** The JSONL file of the rows, named by content: the same rows past the same cursor make the same file. */
  snapshot: string;
}

/** The name a table or query source's cursor is kept under: a changed query starts over. */
export function cursorSourceId(pipeline: PipelineDef): string {
  const s = pipeline.source;
  return s.table !== undefined ? `table:${s.table}` : `query:${hashValue(s.query, 12)}`;
}

export function rowSpec(pipeline: PipelineDef): RowSourceSpec {
  const s = pipeline.source;
  return { table: s.table, query: s.query, cursor: s.cursor! };
}

/**
 * Read the rows past the cursor into a snapshot under `dir/<pipeline>/`; the
 * cursor itself is not moved (the caller does, once the run is safe).
 * Undefined when there is nothing new.
 */
export async function snapshotNewRows(db: Database, pipeline: PipelineDef, dir: string): Promise<{ increment?: RowIncrement; from: string | null }> {
  const source = cursorSourceId(pipeline);
  const from = await sourceCursor(db, pipeline.id, source);
  const rows = await readRowsPast(db, rowSpec(pipeline), from, pipeline.source.key);
  if (rows.length === 0) return { from };
  const text = `${rows.map((r) => JSON.stringify(r.row)).join("\n")}\n`;
  const folder = join(dir, pipeline.id);
  mkdirSync(folder, { recursive: true });
  const snapshot = join(folder, `${sha256(`${source}\n${from}\n${text}`).slice(0, 16)}.jsonl`);
  writeFileSync(snapshot, text);
  return { from, increment: { source, from, to: rows[rows.length - 1]!.cursor, rows: rows.length, snapshot } };
}
