import { eq, sql } from "drizzle-orm";
import { SluiceError } from "../core/errors.ts";
import type { Database } from "./database.ts";
import { runs } from "./schema.ts";
import { idRows } from "./sql.ts";

/**
 * `runs`, `run_items` and `rejected_rows`: a run, the items it read and the
 * source rows that did not become items. Written when a run starts and as
 * its source is loaded; a run row changes again only when it ends.
 */

/** A stage as a run recorded it: what the engine planned, with the parts of its version. */
export interface RunStageRecord {
  index: number;
  id: string;
  kind: string;
  version: string;
  reads: number[];
  parts: Record<string, unknown>;
}

export interface RunRow {
  id: string;
  pipeline: string;
  status: "running" | "finished" | "failed" | "budget_exhausted";
  input_path: string | null;
  input_fingerprint: string | null;
  stages: RunStageRecord[];
  options: Record<string, unknown>;
  loaded_at: string | null;
  rows_read: number;
  created_at: string;
  finished_at: string | null;
  /** Why a failed (or budget-exhausted) run stopped. */
  error: string | null;
}

export async function getRun(db: Database, runId: string): Promise<RunRow | undefined> {
  const rows = await db.rows<RunRow>(sql`SELECT * FROM runs WHERE id = ${runId}`);
  return rows[0];
}

/**
 * The run, or an error a user can act on: no such run (in this store), or a
 * run of another pipeline than the one given.
 */
export async function requireRun(db: Database, runId: string, pipelineId?: string): Promise<RunRow> {
  const run = await getRun(db, runId);
  if (!run) throw new SluiceError(`no run ${runId} in ${db.description} (sluice status lists runs)`);
  if (pipelineId !== undefined && run.pipeline !== pipelineId) throw new SluiceError(`run ${runId} belongs to pipeline ${run.pipeline}, not ${pipelineId}`);
  return run;
}

/**
 * Serialise run creation for one pipeline, inside the transaction `tx`: two
 * processes started together then find (and share) one run instead of each
 * making its own.
 */
export async function lockPipelineRuns(tx: Database, pipelineId: string): Promise<void> {
  await tx.rows(sql`SELECT pg_advisory_xact_lock(hashtext(${`sluice:run:${pipelineId}`}))`);
}

/**
 * The newest unfinished run of a pipeline over the same input, stage versions
 * and mode: running (or left by a process that died), or stopped at its
 * budget. The same command goes on with it, under the cap it has: started
 * again without a larger `--budget`, it stops at once, paying nothing.
 */
export async function findOpenRun(db: Database, q: { pipelineId: string; fingerprint: string; versions: string; mode: string }): Promise<RunRow | undefined> {
  const rows = await db.rows<RunRow>(sql`
    SELECT * FROM runs WHERE pipeline = ${q.pipelineId} AND status IN ('running', 'budget_exhausted')
      AND input_fingerprint = ${q.fingerprint} AND options->>'versions' = ${q.versions}
      AND options->>'mode' = ${q.mode}
    ORDER BY created_at DESC LIMIT 1`);
  return rows[0];
}

/** The newest unfinished rerun of the same base, stage, versions and stopping point (running, or stopped at its budget, as `findOpenRun`). */
export async function findOpenRerun(db: Database, q: { pipelineId: string; baseRunId: string; stage: string; versions: string; stopAfter: number | undefined }): Promise<RunRow | undefined> {
  const rows = await db.rows<RunRow>(sql`
    SELECT * FROM runs WHERE pipeline = ${q.pipelineId} AND status IN ('running', 'budget_exhausted')
      AND options->>'mode' = 'rerun' AND options->>'baseRunId' = ${q.baseRunId}
      AND options->>'stage' = ${q.stage} AND options->>'versions' = ${q.versions}
      AND (options->'stopAfter') IS NOT DISTINCT FROM ${q.stopAfter === undefined ? null : JSON.stringify(q.stopAfter)}::jsonb
    ORDER BY created_at DESC LIMIT 1`);
  return rows[0];
}

/** The pipeline's newest finished run that read its whole input (not a revert, which runs no stage: see `revertsOf`). */
export async function latestFinishedRun(db: Database, pipelineId: string): Promise<RunRow | undefined> {
  const rows = await db.rows<RunRow>(sql`
    SELECT * FROM runs WHERE pipeline = ${pipelineId} AND status = 'finished' AND loaded_at IS NOT NULL AND options->>'revertOf' IS NULL
    ORDER BY created_at DESC, id DESC LIMIT 1`);
  return rows[0];
}

/**
 * The newest run of the same pipeline started after `run` that has finished
 * (not a revert): what it committed is newer than anything `run` computed.
 */
export async function newerFinishedRun(db: Database, run: RunRow): Promise<RunRow | undefined> {
  const rows = await db.rows<RunRow>(sql`
    SELECT * FROM runs WHERE pipeline = ${run.pipeline} AND id <> ${run.id} AND created_at > ${run.created_at}
      AND status = 'finished' AND options->>'revertOf' IS NULL
    ORDER BY created_at DESC, id DESC LIMIT 1`);
  return rows[0];
}

/** The runs that reverted `runId` (recorded by `revertRun`, `options.revertOf`), newest first. */
export async function revertsOf(db: Database, runId: string): Promise<string[]> {
  const rows = await db.rows<{ id: string }>(sql`SELECT id FROM runs WHERE options->>'revertOf' = ${runId} ORDER BY created_at DESC, id DESC`);
  return rows.map((r) => r.id);
}

/**
 * The sluice run an orchestrator run already started, if any (a retried
 * Trigger.dev orchestrator attempt has the same Trigger.dev run id).
 */
export async function runStartedBy(db: Database, pipelineId: string, triggerRunId: string): Promise<string | undefined> {
  const rows = await db.rows<{ id: string }>(sql`
    SELECT id FROM runs WHERE pipeline = ${pipelineId} AND options->>'triggerRunId' = ${triggerRunId}
    ORDER BY created_at LIMIT 1`);
  return rows[0]?.id;
}

export interface NewRun {
  id: string;
  pipelineId: string;
  inputPath: string | null;
  fingerprint: string | null;
  stages: RunStageRecord[];
  options: Record<string, unknown>;
  /** Set for a run whose items are already there (a rerun copies them): it starts out loaded. */
  loaded?: { rowsRead: number };
}

export async function insertRun(db: Database, run: NewRun): Promise<RunRow> {
  const rows = await db.rows<RunRow>(sql`
    INSERT INTO runs (id, pipeline, status, input_path, input_fingerprint, stages, options, loaded_at, rows_read)
    VALUES (${run.id}, ${run.pipelineId}, 'running', ${run.inputPath}, ${run.fingerprint}, ${JSON.stringify(run.stages)}::jsonb,
      ${JSON.stringify(run.options)}::jsonb, ${run.loaded ? sql`now()` : sql`NULL`}, ${run.loaded?.rowsRead ?? 0})
    RETURNING *`);
  return rows[0]!;
}

/** Copy a base run's items and rejected rows into a new run (a rerun reads no file). */
export async function copyRunItems(tx: Database, fromRunId: string, toRunId: string): Promise<void> {
  await tx.rows(sql`
    INSERT INTO run_items (run_id, item_id, line, content_hash, data)
    SELECT ${toRunId}, item_id, line, content_hash, data FROM run_items WHERE run_id = ${fromRunId}`);
  await tx.rows(sql`
    INSERT INTO rejected_rows (run_id, line, item_id, state, reason, raw)
    SELECT ${toRunId}, line, item_id, state, reason, raw FROM rejected_rows WHERE run_id = ${fromRunId}`);
}

export interface LoadedItem {
  item_id: string;
  line: number;
  content_hash: string;
  data: unknown;
}

export interface RejectedRow {
  line: number;
  item_id: string | null;
  state: "quarantined" | "deduplicated";
  reason: string;
  raw: string | null;
}

/** A row of a batch whose id an earlier row of the input has: `same` when its content is that row's too. */
export interface RepeatedId {
  line: number;
  item_id: string;
  first_line: number;
  same: boolean;
}

/**
 * Record a batch of source rows in input order, each new item queued for the
 * first stage in the same statement, and return the rows whose id an earlier
 * row has (recorded by an earlier batch, or earlier in this one): the store,
 * not the process, remembers the ids read, so a load's memory does not grow
 * with the input. A row already recorded (the same line: a load cut short and
 * done again) is skipped, not returned.
 */
export async function insertItems(db: Database, runId: string, firstStage: { index: number; id: string }, items: LoadedItem[]): Promise<RepeatedId[]> {
  if (items.length === 0) return [];
  return db.rows<RepeatedId>(sql`
    WITH x AS (
      SELECT * FROM jsonb_to_recordset(${JSON.stringify(items)}::jsonb) AS x(item_id text, line int, content_hash text, data jsonb)),
    firsts AS (
      -- Each id's first row: recorded before, else the first in this batch. A
      -- primary-key probe per id (LATERAL), whatever the planner believes of
      -- the table's size: PGlite never refreshes its statistics.
      SELECT DISTINCT ON (item_id) item_id, line, content_hash FROM (
        SELECT r.item_id, r.line, r.content_hash FROM (SELECT DISTINCT item_id FROM x) ids
        CROSS JOIN LATERAL (SELECT item_id, line, content_hash FROM run_items WHERE run_id = ${runId} AND item_id = ids.item_id) r
        UNION ALL
        SELECT item_id, line, content_hash FROM x) candidates
      ORDER BY item_id, line),
    loaded AS (
      INSERT INTO run_items (run_id, item_id, line, content_hash, data)
      SELECT ${runId}, x.item_id, x.line, x.content_hash, x.data FROM x JOIN firsts f ON f.item_id = x.item_id AND f.line = x.line
      ON CONFLICT DO NOTHING
      RETURNING item_id),
    queued AS (
      INSERT INTO work (run_id, stage_index, item_id, stage_id, status)
      SELECT ${runId}, ${firstStage.index}, item_id, ${firstStage.id}, 'queued' FROM loaded
      ON CONFLICT DO NOTHING)
    SELECT x.line, x.item_id, f.line AS first_line, x.content_hash = f.content_hash AS same
    FROM x JOIN firsts f ON f.item_id = x.item_id
    WHERE x.line <> f.line
    ORDER BY x.line`);
}

/** Record source rows that did not become items (quarantined, or identical copies of an earlier row). */
export async function insertRejectedRows(db: Database, runId: string, rows: RejectedRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db.rows(sql`
    INSERT INTO rejected_rows (run_id, line, item_id, state, reason, raw)
    SELECT ${runId}, x.line, x.item_id, x.state, x.reason, x.raw
    FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS x(line int, item_id text, state text, reason text, raw text)
    ON CONFLICT DO NOTHING`);
}

export async function markLoaded(db: Database, runId: string, rowsRead: number): Promise<void> {
  await db.db.update(runs).set({ loadedAt: sql`now()`, rowsRead }).where(eq(runs.id, runId));
}

export async function finishRun(db: Database, runId: string): Promise<void> {
  await db.db.update(runs).set({ status: "finished", finishedAt: sql`coalesce(${runs.finishedAt}, now())` }).where(eq(runs.id, runId));
}

export async function failRun(db: Database, runId: string, error: string): Promise<void> {
  await db.db.update(runs).set({ status: "failed", error, finishedAt: sql`now()` }).where(eq(runs.id, runId));
}

/** A run that reached a budget: it stops with its items queued, and `resume` with a larger budget goes on. */
export async function exhaustRun(db: Database, runId: string, reason: string): Promise<void> {
  await db.db.update(runs).set({ status: "budget_exhausted", error: reason, finishedAt: sql`now()` }).where(eq(runs.id, runId));
}

/** Mark an ended run running again (its dead letters were requeued, or its budget was raised): `resume` goes on with it. */
export async function reopenRun(db: Database, runId: string): Promise<void> {
  // A finished run reopened (review decisions taken on, a dead letter retried) keeps when it first
  // finished, in its options: how long it took is that, not the wait for the people who decided.
  await db.db
    .update(runs)
    .set({
      status: "running",
      finishedAt: null,
      error: null,
      options: sql`CASE WHEN ${runs.finishedAt} IS NULL OR ${runs.status} <> 'finished' THEN ${runs.options}
        ELSE ${runs.options} || jsonb_build_object('firstFinishedAt', coalesce(${runs.options}->'firstFinishedAt', to_jsonb(${runs.finishedAt}))) END`,
    })
    .where(eq(runs.id, runId));
}

/** Item rows of a run, by id: the item as loaded and the hash of its content. */
export async function runItems(db: Database, runId: string, itemIds: readonly string[]): Promise<{ item_id: string; data: Record<string, unknown>; content_hash: string }[]> {
  if (itemIds.length === 0) return [];
  return db.rows(sql`
    SELECT r.item_id, r.data, r.content_hash
    FROM ${idRows(itemIds)}
    CROSS JOIN LATERAL (
      SELECT item_id, data, content_hash FROM run_items WHERE run_id = ${runId} AND item_id = i.item_id OFFSET 0) r`);
}

/**
 * The mode a stage of the run sends its calls in: the one already recorded,
 * or else `proposed`, recorded now. The first process to decide wins and
 * every other follows it, so a stage never goes half by batch, half realtime.
 */
export async function settleStageMode(db: Database, runId: string, stageId: string, proposed: "batch" | "realtime", why?: string): Promise<{ mode: "batch" | "realtime"; settledHere: boolean }> {
  const set = await db.rows<{ mode: "batch" | "realtime" }>(sql`
    UPDATE runs SET options = jsonb_set(
        jsonb_set(options, '{stageModes}', coalesce(options->'stageModes', '{}'::jsonb) || jsonb_build_object(${stageId}::text, ${proposed}::text)),
        '{stageModeWhy}', coalesce(options->'stageModeWhy', '{}'::jsonb) || jsonb_build_object(${stageId}::text, ${why ?? null}::text))
    WHERE id = ${runId} AND NOT (coalesce(options->'stageModes', '{}'::jsonb) ? ${stageId})
    RETURNING options->'stageModes'->>${stageId} AS mode`);
  if (set[0]) return { mode: set[0].mode, settledHere: true };
  return { mode: (await settledStageMode(db, runId, stageId))!, settledHere: false };
}

/** The mode a stage's calls go in for this run, once settled (`settleStageMode`, `switchStageMode`). */
export async function settledStageMode(db: Database, runId: string, stageId: string): Promise<"batch" | "realtime" | undefined> {
  const [row] = await db.rows<{ mode: "batch" | "realtime" | null }>(sql`SELECT options->'stageModes'->>${stageId} AS mode FROM runs WHERE id = ${runId}`);
  return row?.mode ?? undefined;
}

/**
 * A stage's mode changed after it was settled: a batch that would miss the
 * run's deadline was cancelled, and the stage's remaining calls go realtime.
 * The reason is appended to the one recorded when the mode was settled.
 */
export async function switchStageMode(db: Database, runId: string, stageId: string, mode: "batch" | "realtime", why: string): Promise<void> {
  await db.rows(sql`
    UPDATE runs SET options = jsonb_set(
        jsonb_set(options, '{stageModes}', coalesce(options->'stageModes', '{}'::jsonb) || jsonb_build_object(${stageId}::text, ${mode}::text)),
        '{stageModeWhy}', coalesce(options->'stageModeWhy', '{}'::jsonb) || jsonb_build_object(${stageId}::text,
          concat_ws('; then ', options->'stageModeWhy'->>${stageId}, ${why}::text)))
    WHERE id = ${runId}`);
}

/** Record the run's deadline (`--deadline`), replacing one recorded before. */
export async function setRunDeadline(db: Database, runId: string, at: Date): Promise<void> {
  await db.rows(sql`UPDATE runs SET options = jsonb_set(options, '{deadlineAt}', to_jsonb(${at.toISOString()}::text)) WHERE id = ${runId}`);
}
