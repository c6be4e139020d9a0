import { join } from "node:path";
import { SluiceError } from "../core/errors.ts";
import type { PipelineDef } from "../core/types.ts";
import type { RunSummary } from "../inspect/summary.ts";
import { checkInput, runPipeline, type LocalRunOptions } from "../runners/local/index.ts";
import { hasRowsPast, recordFileRead, saveSourceCursor, sourceCursor } from "../store/sources.ts";
import { unreadFiles, type UnsettledFile } from "./files.ts";
import { cursorSourceId, pruneSnapshots, rowSpec, snapshotNewRows } from "./snapshot.ts";

export { cursorSourceId } from "./snapshot.ts";
export { unreadFiles } from "./files.ts";

/**
 * One increment of a pipeline's source: what it has not read yet. A table or
 * query source reads the rows past the cursor its last finished run reached,
 * writes them, a page at a time, to a JSONL snapshot (the run's input) and
 * moves the cursor once that run finishes; snapshots whose runs have finished
 * are deleted (the store holds their items). A glob
 * source runs once per file it has not read (by content). Nothing new: no run.
 */

export type SourceKind = "file" | "table" | "query" | "glob";

export interface IncrementResult {
  pipeline: string;
  source: SourceKind;
  /** The runs this increment made: none when nothing was new. */
  runs: RunSummary[];
  /** Rows past the cursor (table, query) or files (glob) read. */
  read: number;
  /** Table and query sources: the cursor before, and after the run (unchanged unless it finished). */
  cursor?: { from: string | null; to: string | null };
  /** Table and query sources: snapshots of finished runs deleted by this increment. */
  pruned?: number;
  /** Glob sources: the file each run read, in the order of `runs`. */
  files?: { file: string; runId: string }[];
  /** Glob sources: files that changed too recently to be read (perhaps still being written), left for the next look. */
  unsettled?: UnsettledFile[];
  /** Glob sources: files that could not be read, with why (recorded, so not tried again until they change). */
  skipped?: { file: string; reason: string }[];
}

export interface IncrementOptions {
  /** Where table snapshots are written. Default `.sluice/increments` under the working directory. */
  snapshotDir?: string;
  /** Where a glob is matched from. Default the working directory. */
  cwd?: string;
  /** Rows of a table or query source read per page (held in memory at once). Default 1,000. */
  pageRows?: number;
  /** A glob source's file changed within this many milliseconds is left for a later look (`FILE_SETTLE_MS`, 2 s). */
  settleMs?: number;
}

export function sourceKind(pipeline: PipelineDef): SourceKind {
  const s = pipeline.source;
  return s.table !== undefined ? "table" : s.query !== undefined ? "query" : s.glob !== undefined ? "glob" : "file";
}

/**
 * Read what is new in a table, query or glob source and run the pipeline over it.
 *
 * @example
 * const result = await runIncrement({ db, pipeline, providers });
 * if (result.runs.length === 0) console.log("nothing new");
 */
export async function runIncrement(opts: LocalRunOptions, options: IncrementOptions = {}): Promise<IncrementResult> {
  const kind = sourceKind(opts.pipeline);
  if (kind === "table" || kind === "query") return runRowIncrement(opts, kind, options);
  if (kind === "glob") return runGlobIncrement(opts, options);
  throw new SluiceError(`pipeline ${opts.pipeline.id} reads a file given with --input, not a table, query or glob source`);
}

async function runRowIncrement(opts: LocalRunOptions, kind: "table" | "query", options: IncrementOptions): Promise<IncrementResult> {
  const { db, pipeline } = opts;
  const dir = options.snapshotDir ?? join(process.cwd(), ".sluice", "increments");
  const { increment, from } = await snapshotNewRows(db, pipeline, dir, { pageRows: options.pageRows });
  if (!increment) {
    const pruned = (await pruneSnapshots(db, pipeline, dir)).length;
    return { pipeline: pipeline.id, source: kind, runs: [], read: 0, cursor: { from, to: from }, pruned };
  }
  const { source, to } = increment;
  const summary = await runPipeline(opts, increment.snapshot, { source, cursorFrom: from, cursorTo: to });
  const finished = summary.status === "finished";
  if (finished) await saveSourceCursor(db, pipeline.id, source, { value: to, seen: increment.seen }, summary.runId, increment.rows);
  const pruned = (await pruneSnapshots(db, pipeline, dir)).length;
  return { pipeline: pipeline.id, source: kind, runs: [summary], read: increment.rows, cursor: { from, to: finished ? to : from }, pruned };
}

async function runGlobIncrement(opts: LocalRunOptions, options: IncrementOptions): Promise<IncrementResult> {
  const { db, pipeline } = opts;
  const files = await unreadFiles(db, pipeline, options.cwd, options.settleMs);
  const runs: RunSummary[] = [];
  const skipped: { file: string; reason: string }[] = [];
  const ran: { file: string; runId: string }[] = [];
  for (const f of files) {
    try {
      await checkInput(f.file, pipeline);
    } catch (err) {
      // A file that cannot be read at all (empty, not UTF-8) is recorded too: it is tried again only once its content changes.
      if (!(err instanceof SluiceError)) throw err;
      skipped.push({ file: f.path, reason: err.message });
      await recordFileRead(db, pipeline.id, f.path, f.fingerprint, "unreadable");
      continue;
    }
    const summary = await runPipeline(opts, f.file, { source: `glob:${pipeline.source.glob}`, sourceFile: f.path });
    runs.push(summary);
    ran.push({ file: f.path, runId: summary.runId });
    if (summary.status === "finished") await recordFileRead(db, pipeline.id, f.path, f.fingerprint, summary.runId);
    else break;
  }
  return { pipeline: pipeline.id, source: "glob", runs, read: files.length, files: ran, skipped, unsettled: files.unsettled };
}

/** Whether a sensor of the pipeline would start a run now: rows past its cursor, or a file not read. */
export async function hasNewInput(db: LocalRunOptions["db"], pipeline: PipelineDef, options: IncrementOptions = {}): Promise<{ due: boolean; why: string }> {
  const kind = sourceKind(pipeline);
  if (kind === "table" || kind === "query") {
    const from = await sourceCursor(db, pipeline.id, cursorSourceId(pipeline));
    const due = await hasRowsPast(db, rowSpec(pipeline), from);
    return { due, why: `new rows past ${pipeline.source.cursor} ${from?.value ?? "(first read)"}` };
  }
  if (kind === "glob") {
    const files = await unreadFiles(db, pipeline, options.cwd, options.settleMs);
    const names = files.slice(0, 3).map((f) => f.path).join(", ") + (files.length > 3 ? ", ..." : "");
    return { due: files.length > 0, why: `${files.length} new file(s) matching ${pipeline.source.glob}: ${names}` };
  }
  return { due: false, why: "" };
}
