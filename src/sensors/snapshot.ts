import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashValue } from "../core/hash.ts";
import type { PipelineDef } from "../core/types.ts";
import type { Database } from "../store/database.ts";
import { readRowsPast, snapshotRuns, sourceCursor, type RowSourceSpec } from "../store/sources.ts";

/**
 * The rows of a table or query source past the pipeline's cursor, written to
 * a JSONL file: the input of the run that takes them. Only store reads and
 * file writes, so both the local sensors (`increments.ts`) and the Trigger.dev
 * sensor task use it.
 *
 * A snapshot is the run's input until the run is loaded: from then on
 * `resume` and `rerun` read the run's items from the store (`run_items`), not
 * the file. `pruneSnapshots` deletes the snapshots of finished runs; those of
 * unfinished runs stay until they finish.
 */

export interface RowIncrement {
  /** The name the cursor is kept under (`table:<name>` or `query:<hash>`). */
  source: string;
  from: string | null;
  to: string;
  /** The rows at exactly `to` read so far (this increment's, and the last one's when `to` is where it stopped): `SourceCursor.seen`. */
  seen: string[];
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

export interface SnapshotOptions {
  /** Rows read from the source per page (what is held in memory at once); the store's default when absent. */
  pageRows?: number;
}

/**
 * Read the rows past the cursor into a snapshot under `dir/<pipeline>/`, a
 * page at a time: each page is appended to the file as it arrives, so memory
 * holds one page however many rows are new. The file is written under a
 * temporary name and renamed once complete, so a snapshot is never seen half
 * written. The cursor itself is not moved (the caller does, once the run is
 * safe). Undefined when there is nothing new.
 */
export async function snapshotNewRows(db: Database, pipeline: PipelineDef, dir: string, options: SnapshotOptions = {}): Promise<{ increment?: RowIncrement; from: string | null }> {
  const source = cursorSourceId(pipeline);
  const cursor = await sourceCursor(db, pipeline.id, source);
  const from = cursor?.value ?? null;
  const folder = join(dir, pipeline.id);
  mkdirSync(folder, { recursive: true });
  const partial = join(folder, `.partial-${process.pid}-${randomBytes(4).toString("hex")}`);
  const hash = createHash("sha256").update(`${source}\n${from}\n`);
  const file = await open(partial, "w");
  let to: string | undefined;
  let seen: string[] = [];
  let rows: number;
  try {
    rows = await readRowsPast(
      db,
      rowSpec(pipeline),
      cursor,
      async (page) => {
        const text = `${page.map((r) => JSON.stringify(r.row)).join("\n")}\n`;
        hash.update(text);
        await file.write(text);
        // Pages come in cursor order: the rows at the last value are the last ones read.
        for (const r of page) {
          if (r.cursor !== to) seen = r.cursor === cursor?.value ? [...cursor.seen] : [];
          to = r.cursor;
          seen.push(r.hash);
        }
      },
      { keep: pipeline.source.key, pageRows: options.pageRows },
    );
  } catch (err) {
    await file.close();
    rmSync(partial, { force: true });
    throw err;
  }
  await file.close();
  if (rows === 0 || to === undefined) {
    rmSync(partial, { force: true });
    return { from };
  }
  const snapshot = join(folder, `${hash.digest("hex").slice(0, 16)}.jsonl`);
  renameSync(partial, snapshot);
  return { from, increment: { source, from, to, seen, rows, snapshot } };
}

/** A snapshot no run was recorded over (its process died first) is deleted once it is this old. */
export const ORPHAN_SNAPSHOT_MS = 24 * 3_600_000;

/**
 * Delete the pipeline's snapshots under `dir/<pipeline>/` that no run needs:
 * those every run over which has finished (`resume` has nothing to continue,
 * and `rerun` copies the items from the store), and those no run was ever
 * recorded over that are older than a day (written by a process that died
 * before starting its run; a fresh one may be about to start). Snapshots of
 * unfinished runs stay. Returns the files deleted.
 */
export async function pruneSnapshots(db: Database, pipeline: PipelineDef, dir: string, now = Date.now()): Promise<string[]> {
  const folder = join(dir, pipeline.id);
  let names: string[];
  try {
    names = readdirSync(folder).filter((n) => n.endsWith(".jsonl"));
  } catch {
    return [];
  }
  if (names.length === 0) return [];
  const paths = names.map((n) => join(folder, n));
  const runs = await snapshotRuns(db, pipeline.id, paths);
  const pruned: string[] = [];
  for (const path of paths) {
    // Another increment of the pipeline may be writing this very file again (the same rows past the
    // same cursor, before the cursor moved): those rows are the finished run's, so if its run then
    // finds the file gone it stops in one line, and nothing is left unread.
    const statuses = runs.get(path);
    const done = statuses ? statuses.every((s) => s === "finished") : isOlderThan(path, now - ORPHAN_SNAPSHOT_MS);
    if (!done) continue;
    rmSync(path, { force: true });
    pruned.push(path);
  }
  return pruned;
}

function isOlderThan(path: string, at: number): boolean {
  try {
    return statSync(path).mtimeMs < at;
  } catch {
    return false;
  }
}

/** The rows a table or query source has past the pipeline's cursor, as a snapshot that lasts for one callback. */
export interface PendingRows {
  /** The name the cursor is kept under. */
  source: string;
  /** The cursor the pipeline has reached (null before its first finished run). */
  from: string | null;
  /** Rows past it: 0 when nothing is new. */
  rows: number;
  /** The JSONL file of those rows; absent when there are none. */
  snapshot?: string;
}

/**
 * Hand `fn` the rows past the pipeline's cursor as a snapshot file in a
 * folder of its own, deleted when `fn` settles: what `sluice estimate` reads
 * for a table or query source. The cursor does not move, and no run is
 * recorded.
 *
 * @example
 * const est = await withPendingRows(db, pipeline, (pending) => estimateOver(pending.snapshot));
 */
export async function withPendingRows<T>(db: Database, pipeline: PipelineDef, fn: (pending: PendingRows) => Promise<T>, options: SnapshotOptions = {}): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-pending-"));
  try {
    const { increment, from } = await snapshotNewRows(db, pipeline, dir, options);
    return await fn(increment ? { source: increment.source, from, rows: increment.rows, snapshot: increment.snapshot } : { source: cursorSourceId(pipeline), from, rows: 0 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
