import { sql, type SQL } from "drizzle-orm";
import { ADVANCING } from "../core/status.ts";
import type { Database } from "./database.ts";
import type { RejectedRow, RunRow } from "./runs.ts";
import { anyText } from "./sql.ts";
import { targetName } from "./targets.ts";
import { DEFAULT_LEASE_MS } from "./workers.ts";

/**
 * Read-only queries behind the inspection commands (`status`, `dlq`,
 * `quarantine`, `diff`, `compare`, `versions`) and the test harness. None of
 * them writes, so any of them can run beside a live run. Rows come back as
 * the database returns them (snake_case); callers shape them for output.
 */

// --- run summary -----------------------------------------------------------

/**
 * The work row that says where each item ended, for `DISTINCT ON (w.item_id)`:
 * its last row in a list of stages. With branches (`carried`, pairs from
 * `core/dag.ts` `carriedPairs`), a row where the item stopped on one branch
 * (gated out, failed, held for review) while another branch carried it on
 * does not count; of the rest, a failure or a review comes before a gate.
 */
export function endingRowOrder(carried: readonly (readonly [number, number])[]): SQL {
  if (carried.length === 0) return sql`w.item_id, w.stage_index DESC`;
  const pairs = carried.map(([s, t]) => `${s}:${t}`);
  return sql`w.item_id,
    CASE WHEN w.status = ${anyText(ADVANCING)} THEN 1
      WHEN EXISTS (SELECT 1 FROM work a WHERE a.run_id = w.run_id AND a.item_id = w.item_id AND a.status = ${anyText(ADVANCING)}
        AND (w.stage_index::text || ':' || a.stage_index::text) = ${anyText(pairs)}) THEN 2
      WHEN w.status <> 'gated_out' THEN 0
      ELSE 1 END,
    w.stage_index DESC`;
}

/**
 * Items by their status where they ended (items with no work row yet are not
 * counted): at the last stage they reached; with branches, see `endingRowOrder`.
 */
export async function finalStatusCounts(db: Database, runId: string, carried: readonly (readonly [number, number])[] = []): Promise<{ status: string; n: number }[]> {
  return db.rows<{ status: string; n: number }>(sql`
    SELECT status, count(*)::int AS n FROM (
      SELECT DISTINCT ON (w.item_id) w.item_id, w.status FROM work w WHERE w.run_id = ${runId}
      ORDER BY ${endingRowOrder(carried)}) t
    GROUP BY status`);
}

/** Loaded items no stage has queued yet. */
export async function unstartedItemCount(db: Database, runId: string): Promise<number> {
  const rows = await db.rows<{ n: number }>(sql`
    SELECT count(*)::int AS n FROM run_items i
    WHERE i.run_id = ${runId} AND NOT EXISTS (SELECT 1 FROM work w WHERE w.run_id = i.run_id AND w.item_id = i.item_id)`);
  return rows[0]?.n ?? 0;
}

/** Source rows that did not become items, counted by state (quarantined, deduplicated). */
export async function rejectedRowCounts(db: Database, runId: string): Promise<{ state: string; n: number }[]> {
  return db.rows<{ state: string; n: number }>(sql`
    SELECT state, count(*)::int AS n FROM rejected_rows WHERE run_id = ${runId} GROUP BY state`);
}

export interface StageWorkCount {
  stage_index: number;
  status: string;
  reused: boolean;
  /** The stage looked at the item (it has an input hash); false for items its gate kept out. */
  handled: boolean;
  n: number;
}

/** Work rows of a run counted by stage, status, reuse and whether the stage looked at the item. */
export async function stageWorkCounts(db: Database, runId: string): Promise<StageWorkCount[]> {
  return db.rows<StageWorkCount>(sql`
    SELECT stage_index, status, reused, (input_hash IS NOT NULL) AS handled, count(*)::int AS n
    FROM work WHERE run_id = ${runId}
    GROUP BY stage_index, status, reused, handled`);
}

export interface StageCallTotals {
  stage_id: string;
  calls: number;
  /** Calls the provider answered (and billed): usage recorded. A failed request, a batch's error result or an expired one, has none. */
  answered: number;
  /** Batch calls answered: what was paid at the batch price. */
  batch_calls: number;
  input_tokens: number;
  output_tokens: number;
  cost: number;
  list_cost: number;
  batch_saved: number;
}

/** Provider requests of a run per stage (from `attempts`): calls, tokens, price paid, list price, batch discount. */
export async function stageCallTotals(db: Database, runId: string): Promise<StageCallTotals[]> {
  return db.rows<StageCallTotals>(sql`
    SELECT stage_id, count(*)::int AS calls, (count(*) FILTER (WHERE input_tokens > 0))::int AS answered,
      (count(*) FILTER (WHERE mode = 'batch' AND input_tokens > 0))::int AS batch_calls,
      coalesce(sum(input_tokens), 0)::int AS input_tokens, coalesce(sum(output_tokens), 0)::int AS output_tokens,
      coalesce(sum(cost_usd), 0)::float8 AS cost, coalesce(sum(list_cost_usd), 0)::float8 AS list_cost,
      coalesce(sum(list_cost_usd - cost_usd) FILTER (WHERE mode = 'batch'), 0)::float8 AS batch_saved
    FROM attempts WHERE run_id = ${runId} AND provider IS NOT NULL GROUP BY stage_id`);
}

// --- run listings (status, dlq, quarantine) --------------------------------

export interface RunListingRow {
  id: string;
  pipeline: string;
  status: string;
  rows_read: number;
  created_at: string;
  finished_at: string | null;
  cost: number;
  /** A worker of the run has beaten within the lease: something is working on it now. */
  live: boolean;
}

/** The newest runs of any pipeline, with what their provider attempts cost, and whether a live worker has them. */
export async function recentRuns(db: Database, limit: number, leaseMs = DEFAULT_LEASE_MS): Promise<RunListingRow[]> {
  return db.rows<RunListingRow>(sql`
    SELECT r.id, r.pipeline, r.status, r.rows_read, r.created_at, r.finished_at,
      coalesce((SELECT sum(cost_usd) FROM attempts a WHERE a.run_id = r.id), 0)::float8 AS cost,
      EXISTS (SELECT 1 FROM workers w WHERE w.run_id = r.id AND w.heartbeat_at > now() - make_interval(secs => ${leaseMs / 1000})) AS live
    FROM runs r ORDER BY r.created_at DESC LIMIT ${limit}`);
}

export interface DeadLetterRow {
  stage_id: string;
  item_id: string;
  error_class: string | null;
  error_message: string | null;
  attempts: number;
}

/** A run's dead letters (work rows in `failed_terminal`), in stage then item order. */
export async function deadLetters(db: Database, runId: string): Promise<DeadLetterRow[]> {
  return db.rows<DeadLetterRow>(sql`
    SELECT stage_id, item_id, error_class, error_message, attempts FROM work
    WHERE run_id = ${runId} AND status = 'failed_terminal' ORDER BY stage_index, item_id`);
}

/** Source rows of a run that did not become items, by line: the quarantined ones, or with `all` the deduplicated too. */
export async function rejectedRows(db: Database, runId: string, options: { all?: boolean } = {}): Promise<RejectedRow[]> {
  return db.rows<RejectedRow>(sql`
    SELECT line, item_id, state, reason, raw FROM rejected_rows
    WHERE run_id = ${runId} ${options.all ? sql`` : sql`AND state = 'quarantined'`}
    ORDER BY line`);
}

// --- stage outputs of a run (diff, compare, test harness) ------------------

export interface WorkOutputHash {
  stage_id: string;
  item_id: string;
  status: string;
  output_hash: string | null;
}

/** Every work row of a run (or of one stage of it) with the hash of the output it points at. */
export async function workOutputHashes(db: Database, runId: string, stageId?: string): Promise<WorkOutputHash[]> {
  return db.rows<WorkOutputHash>(sql`
    SELECT w.stage_id, w.item_id, w.status, o.output_hash FROM work w LEFT JOIN stage_outputs o ON o.id = w.output_id
    WHERE w.run_id = ${runId} ${stageId ? sql`AND w.stage_id = ${stageId}` : sql``}`);
}

export interface WorkOutput {
  item_id: string;
  status: string;
  /** Null when the work row points at no output. */
  output: unknown;
}

/** Status and output of each item at one stage of a run, or of only the given items. */
export async function workOutputs(db: Database, runId: string, stageId: string, itemIds?: readonly string[]): Promise<WorkOutput[]> {
  return db.rows<WorkOutput>(sql`
    SELECT w.item_id, w.status, o.output FROM work w LEFT JOIN stage_outputs o ON o.id = w.output_id
    WHERE w.run_id = ${runId} AND w.stage_id = ${stageId} ${itemIds ? sql`AND w.item_id = ${anyText(itemIds)}` : sql``}`);
}

/** Every item of a run with its status where it ended (`queued` when no stage has it yet; `carried`: see `finalStatusCounts`). */
export async function finalItemStatuses(db: Database, runId: string, carried: readonly (readonly [number, number])[] = []): Promise<{ item_id: string; status: string }[]> {
  return db.rows<{ item_id: string; status: string }>(sql`
    SELECT i.item_id, coalesce(f.status, 'queued') AS status FROM run_items i
    LEFT JOIN (SELECT DISTINCT ON (w.item_id) w.item_id, w.status FROM work w WHERE w.run_id = ${runId} ORDER BY ${endingRowOrder(carried)}) f
      ON f.item_id = i.item_id
    WHERE i.run_id = ${runId}`);
}

/** Ids of the items that reached a stage in a run (work rows there other than `gated_out`). */
export async function itemsReachingStage(db: Database, runId: string, stageId: string): Promise<string[]> {
  const rows = await db.rows<{ item_id: string }>(sql`
    SELECT item_id FROM work WHERE run_id = ${runId} AND stage_id = ${stageId} AND status <> 'gated_out'`);
  return rows.map((r) => r.item_id);
}

/** Status, output and output cost (null when no output) of these items at one stage of a run. */
export async function workOutputsWithCost(db: Database, runId: string, stageId: string, itemIds: readonly string[]): Promise<(WorkOutput & { cost_usd: number | null })[]> {
  return db.rows<WorkOutput & { cost_usd: number | null }>(sql`
    SELECT w.item_id, w.status, o.output, o.cost_usd FROM work w LEFT JOIN stage_outputs o ON o.id = w.output_id
    WHERE w.run_id = ${runId} AND w.stage_id = ${stageId} AND w.item_id = ${anyText(itemIds)}`);
}

/**
 * The newest run of a pipeline in which items reached a stage: the newest
 * finished one, or with `runId` that run only.
 */
export async function latestRunReachingStage(db: Database, pipelineId: string, stageId: string, runId?: string): Promise<RunRow | undefined> {
  const rows = await db.rows<RunRow>(sql`
    SELECT * FROM runs r WHERE r.pipeline = ${pipelineId}
      AND ${runId === undefined ? sql`r.status = 'finished'` : sql`r.id = ${runId}`}
      AND EXISTS (SELECT 1 FROM work w WHERE w.run_id = r.id AND w.stage_id = ${stageId} AND w.status <> 'gated_out')
    ORDER BY r.created_at DESC, r.id DESC LIMIT 1`);
  return rows[0];
}

/** Every row of a commit target table (the pipeline names the table, so it is quoted as an identifier). */
export async function targetRows(db: Database, table: string): Promise<{ key: string; data: unknown; status: string }[]> {
  return db.rows<{ key: string; data: unknown; status: string }>(sql`SELECT key, data, status FROM ${targetName(table)}`);
}

/** Every row of a target, whole (bookkeeping columns too), as text ordered by key: a dump to compare byte for byte. */
export async function dumpTarget(db: Database, table: string): Promise<string[]> {
  const rows = await db.rows<{ row: string }>(sql`SELECT to_jsonb(t)::text AS row FROM ${targetName(table)} t ORDER BY key`);
  return rows.map((r) => r.row);
}

// --- stage versions (versions, compare) ------------------------------------

export interface StageVersionSeen {
  stage_id: string;
  version: string;
  /** The version's parts as the first run planned with it recorded them. */
  parts: Record<string, unknown>;
  first_run: string;
  first_at: string;
  last_at: string;
  runs: number;
  /** Lowest position of the stage in the plans of those runs. */
  pos: number;
}

/** Every (stage, version) the pipeline's runs were planned with, from `runs.stages`, with its first and last run. */
export async function stageVersionsSeen(db: Database, pipelineId: string): Promise<StageVersionSeen[]> {
  return db.rows<StageVersionSeen>(sql`
    SELECT s.value->>'id' AS stage_id, s.value->>'version' AS version,
      (array_agg(s.value->'parts' ORDER BY r.created_at, r.id))[1] AS parts,
      (array_agg(r.id ORDER BY r.created_at, r.id))[1] AS first_run,
      min(r.created_at) AS first_at, max(r.created_at) AS last_at, count(DISTINCT r.id)::int AS runs,
      min((s.ordinality - 1)::int) AS pos
    FROM runs r CROSS JOIN LATERAL jsonb_array_elements(r.stages) WITH ORDINALITY AS s(value, ordinality)
    WHERE r.pipeline = ${pipelineId}
    GROUP BY 1, 2`);
}

/** Stored outputs of a pipeline per (stage, version): rows, distinct items, what they cost. */
export async function outputCountsByVersion(db: Database, pipelineId: string): Promise<{ stage_id: string; stage_version: string; outputs: number; items: number; cost: number }[]> {
  return db.rows<{ stage_id: string; stage_version: string; outputs: number; items: number; cost: number }>(sql`
    SELECT stage_id, stage_version, count(*)::int AS outputs, count(DISTINCT item_id)::int AS items, coalesce(sum(cost_usd), 0)::float8 AS cost
    FROM stage_outputs WHERE pipeline = ${pipelineId} GROUP BY 1, 2`);
}

export interface VersionOutputRow {
  item_id: string;
  status: string;
  output: unknown;
  cost_usd: number;
  run_id: string;
  created_at: string;
}

/** Outputs of the stage versions starting with `versionPrefix`, whichever run made them, by item then age. */
export async function outputsOfVersion(db: Database, pipelineId: string, stageId: string, versionPrefix: string, options: { limit: number; itemId?: string }): Promise<VersionOutputRow[]> {
  return db.rows<VersionOutputRow>(sql`
    SELECT item_id, status, output, cost_usd, run_id, created_at FROM stage_outputs
    WHERE pipeline = ${pipelineId} AND stage_id = ${stageId} AND stage_version LIKE ${`${versionPrefix}%`}
      ${options.itemId === undefined ? sql`` : sql`AND item_id = ${options.itemId}`}
    ORDER BY item_id, created_at LIMIT ${options.limit}`);
}

export interface CostedOutput {
  item_id: string;
  input_hash: string;
  status: string;
  output: unknown;
  cost_usd: number;
}

/** Outputs one stage version has for these items, with the input hash each was made from. */
export async function versionOutputsFor(db: Database, q: { pipelineId: string; stageId: string; version: string; itemIds: readonly string[] }): Promise<CostedOutput[]> {
  return db.rows<CostedOutput>(sql`
    SELECT item_id, input_hash, status, output, cost_usd FROM stage_outputs
    WHERE pipeline = ${q.pipelineId} AND stage_id = ${q.stageId} AND stage_version = ${q.version} AND item_id = ${anyText(q.itemIds)}`);
}

// --- demo label quality (scripts/label-quality.ts) -------------------------

/** One top-level field of each item's output at a stage of a run, as text (items with an output only). */
export async function outputField(db: Database, runId: string, stageId: string, field: string): Promise<{ item_id: string; value: string | null }[]> {
  return db.rows<{ item_id: string; value: string | null }>(sql`
    SELECT w.item_id, o.output->>${field} AS value FROM work w JOIN stage_outputs o ON o.id = w.output_id
    WHERE w.run_id = ${runId} AND w.stage_id = ${stageId}`);
}
