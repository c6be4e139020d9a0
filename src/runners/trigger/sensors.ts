import { join } from "node:path";
import { tmpdir } from "node:os";
import type { PipelineDef } from "../../core/types.ts";
import { snapshotNewRows } from "../../sensors/snapshot.ts";
import type { Database } from "../../store/database.ts";
import { saveSourceCursor } from "../../store/sources.ts";
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
 * run and sends the same key.
 */
export async function senseNewRows(db: Database, pipeline: PipelineDef, dir = join(tmpdir(), "sluice-increments")): Promise<SensorTick> {
  const { increment, from } = await snapshotNewRows(db, pipeline, dir);
  if (!increment) return { from };
  const submitted = await submitRun({
    db,
    pipeline,
    inputPath: increment.snapshot,
    allowEmbedded: db.kind === "pglite",
    idempotencyKey: [pipeline.id, increment.source, increment.to],
    runOptions: { source: increment.source, cursorFrom: from, cursorTo: increment.to },
  });
  await saveSourceCursor(db, pipeline.id, increment.source, increment.to, submitted.runId, increment.rows);
  return { from, started: { ...submitted, to: increment.to, rows: increment.rows } };
}
