import { basename, join } from "node:path";
import { tmpdir } from "node:os";
import { SluiceError } from "../../core/errors.ts";
import type { PipelineDef } from "../../core/types.ts";
import { unreadFiles, type UnsettledFile } from "../../sensors/files.ts";
import { pruneSnapshots, snapshotNewRows } from "../../sensors/snapshot.ts";
import { checkSource } from "../../sources/index.ts";
import type { Database } from "../../store/database.ts";
import { recordFileRead, saveSourceCursor } from "../../store/sources.ts";
import { submitRun, type SubmittedRun } from "./submit.ts";

export interface SensorTick {
  /** The cursor the pipeline had reached. */
  from: string | null;
  /** The new cursor and the run started for the rows up to it; absent when there was nothing new. */
  started?: SubmittedRun & { to: string; rows: number };
}

/**
 * One tick of an `onNewRows` pipeline's sensor task on Trigger.dev: read the
 * rows past its cursor, record and load them as a run in the shared store,
 * trigger the orchestrator keyed by the new cursor (so a retried or doubled
 * tick starts one run per cursor value), then move the cursor. The run's
 * items are in the store before the cursor moves, so none is lost; a tick
 * that dies before moving it reads the same rows again, continues the same
 * run and sends the same key. Each tick also deletes the snapshots of runs
 * that have finished since.
 */
export async function senseNewRows(db: Database, pipeline: PipelineDef, dir = join(tmpdir(), "sluice-increments")): Promise<SensorTick> {
  const { increment, from } = await snapshotNewRows(db, pipeline, dir);
  if (!increment) {
    await pruneSnapshots(db, pipeline, dir);
    return { from };
  }
  const submitted = await submitRun({
    db,
    pipeline,
    inputPath: increment.snapshot,
    allowEmbedded: db.kind === "pglite",
    // Rows arriving later at the same cursor value make another snapshot (named by content), so another run.
    idempotencyKey: [pipeline.id, increment.source, increment.to, basename(increment.snapshot)],
    runOptions: { source: increment.source, cursorFrom: from, cursorTo: increment.to },
  });
  await saveSourceCursor(db, pipeline.id, increment.source, { value: increment.to, seen: increment.seen }, submitted.runId, increment.rows);
  await pruneSnapshots(db, pipeline, dir);
  return { from, started: { ...submitted, to: increment.to, rows: increment.rows } };
}

export interface FilesTick {
  /** One entry per new file (path relative to where the glob is matched), in name order. */
  files: ({ path: string; fingerprint: string } & ({ started: SubmittedRun } | { skipped: string }))[];
  /** Files that changed within `FILE_SETTLE_MS` (perhaps still being written): left for the next tick. */
  unsettled?: UnsettledFile[];
}

/**
 * One tick of an `onNewFiles` pipeline's sensor task on Trigger.dev: for each
 * file matching the glob that has not been read (by path and content), load
 * it as a run in the shared store, trigger the orchestrator keyed by the
 * file's path and fingerprint (a retried or doubled tick starts one run per
 * file version), then record the file as read. A file that cannot be read at
 * all is recorded with why, and tried again only once its content changes.
 * The glob is matched from `cwd`: the worker's working directory unless a
 * folder is given.
 */
export async function senseNewFiles(db: Database, pipeline: PipelineDef, cwd = process.cwd()): Promise<FilesTick> {
  const files: FilesTick["files"] = [];
  const unread = await unreadFiles(db, pipeline, cwd);
  for (const f of unread) {
    try {
      await checkSource(f.file, pipeline.source);
    } catch (err) {
      if (!(err instanceof SluiceError)) throw err;
      await recordFileRead(db, pipeline.id, f.path, f.fingerprint, "unreadable");
      files.push({ path: f.path, fingerprint: f.fingerprint, skipped: err.message });
      continue;
    }
    const started = await submitRun({
      db,
      pipeline,
      inputPath: f.file,
      allowEmbedded: db.kind === "pglite",
      idempotencyKey: [pipeline.id, "file", f.path, f.fingerprint],
      runOptions: { source: `glob:${pipeline.source.glob}`, sourceFile: f.path },
    });
    await recordFileRead(db, pipeline.id, f.path, f.fingerprint, started.runId);
    files.push({ path: f.path, fingerprint: f.fingerprint, started });
  }
  return unread.unsettled.length ? { files, unsettled: unread.unsettled } : { files };
}
