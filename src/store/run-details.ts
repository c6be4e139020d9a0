import { sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { anyText, textArray } from "./sql.ts";
import { isChain, recordedReads } from "../core/dag.ts";
import { ADVANCING } from "../core/status.ts";
import { endingRowOrder } from "./reports.ts";

/**
 * Read-only queries behind the HTML report (`sluice report`) and the web
 * console (`sluice ui`): where a run's money, tokens and time went, why items
 * failed or were quarantined, and everything about one item. Like
 * `reports.ts`, none writes, so any of them can run beside a live run. Rows
 * come back as the database returns them (snake_case).
 */

// --- one run, in aggregate --------------------------------------------------

export interface ModelCallTotals {
  stage_id: string;
  provider: string;
  model: string;
  mode: string | null;
  calls: number;
  /** Calls that ended in an error (still counted as calls: they were sent). */
  errors: number;
  input_tokens: number;
  output_tokens: number;
  cached_tokens: number;
  cost: number;
  list_cost: number;
  latency_ms: number;
}

/** Provider requests of a run per stage, provider, model and mode: the rows `stageCallTotals` sums per stage. */
export async function callsByModel(db: Database, runId: string): Promise<ModelCallTotals[]> {
  return db.rows<ModelCallTotals>(sql`
    SELECT stage_id, provider, coalesce(model, '') AS model, mode, count(*)::int AS calls,
      (count(*) FILTER (WHERE error_class IS NOT NULL))::int AS errors,
      coalesce(sum(input_tokens), 0)::int AS input_tokens, coalesce(sum(output_tokens), 0)::int AS output_tokens,
      coalesce(sum(cached_tokens), 0)::int AS cached_tokens,
      coalesce(sum(cost_usd), 0)::float8 AS cost, coalesce(sum(list_cost_usd), 0)::float8 AS list_cost,
      coalesce(sum(latency_ms), 0)::float8 AS latency_ms
    FROM attempts WHERE run_id = ${runId} AND provider IS NOT NULL
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`);
}

/** Attempts of a run that ended in an error, counted by stage and error class (retried ones included). */
export async function attemptErrorCounts(db: Database, runId: string): Promise<{ stage_id: string; error_class: string; n: number }[]> {
  return db.rows<{ stage_id: string; error_class: string; n: number }>(sql`
    SELECT stage_id, error_class, count(*)::int AS n FROM attempts
    WHERE run_id = ${runId} AND error_class IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 3 DESC`);
}

export interface MessageGroup {
  stage_id: string;
  error_class: string | null;
  message: string | null;
  n: number;
  /** The lowest item id with this message. */
  example: string;
}

/** A run's dead letters grouped by stage, error class and message. */
export async function deadLetterGroups(db: Database, runId: string): Promise<MessageGroup[]> {
  return db.rows<MessageGroup>(sql`
    SELECT stage_id, error_class, error_message AS message, count(*)::int AS n, min(item_id) AS example
    FROM work WHERE run_id = ${runId} AND status = 'failed_terminal'
    GROUP BY stage_index, stage_id, error_class, error_message ORDER BY stage_index, n DESC`);
}

/** Source rows of a run that did not become items, grouped by state and reason, with the first line of each. */
export async function rejectedReasonGroups(db: Database, runId: string): Promise<{ state: string; reason: string; n: number; first_line: number }[]> {
  return db.rows<{ state: string; reason: string; n: number; first_line: number }>(sql`
    SELECT state, reason, count(*)::int AS n, min(line)::int AS first_line FROM rejected_rows
    WHERE run_id = ${runId} GROUP BY 1, 2 ORDER BY n DESC, first_line`);
}

export interface StageTiming {
  stage_index: number;
  /** The first and last result the stage wrote in this run (null when it wrote none yet). */
  first_at: string | null;
  last_at: string | null;
}

/** When each stage of a run wrote its first and its last result. */
export async function stageTimings(db: Database, runId: string): Promise<StageTiming[]> {
  return db.rows<StageTiming>(sql`
    SELECT stage_index, min(updated_at) AS first_at, max(updated_at) AS last_at FROM work
    WHERE run_id = ${runId} AND status NOT IN ('queued', 'processing')
    GROUP BY 1 ORDER BY 1`);
}

// --- listings for the console ------------------------------------------------

export interface PipelineRow {
  pipeline: string;
  runs: number;
  last_run: string;
  last_at: string;
}

/** Every pipeline with runs in the store, newest activity first. */
export async function pipelinesWithRuns(db: Database): Promise<PipelineRow[]> {
  return db.rows<PipelineRow>(sql`
    SELECT pipeline, count(*)::int AS runs, (array_agg(id ORDER BY created_at DESC, id DESC))[1] AS last_run, max(created_at) AS last_at
    FROM runs GROUP BY pipeline ORDER BY last_at DESC`);
}

/** How far a run has come: its items, the share of its work done, and the items that have ended. */
export interface RunProgress {
  run_id: string;
  items: number;
  /** Items with nothing more to do in the run: stopped at a stage (gated out, sent to review, failed, rejected) or through its last. Counted for a chain of stages only. */
  ended?: number;
  /** From 0 to 1 (see `runProgress`). */
  share: number;
}

/**
 * How far each given run has come. An item is worth one step per stage the
 * run goes through (up to the stage a `rerun --only` stops after): a step is
 * done when the item's row at that stage has settled. In a chain of stages,
 * an item that stopped at one (gated out, sent to review, failed) has done
 * the steps after it too, since none is left for it; with branches, an item
 * is gated out on the branch it does not take and goes on along the other,
 * so only its settled rows count, and an item that stopped early counts in
 * full once the run ends. The share grows as work settles: items that
 * settled a stage and wait for their next one's row are not counted back as
 * open, as counting the items without open work did (the share went back
 * each time a stage took items on). It goes back only when settled work is
 * queued again: review decisions or dead letters requeued for a resume.
 */
export async function runProgress(db: Database, runIds: readonly string[]): Promise<RunProgress[]> {
  if (runIds.length === 0) return [];
  const runs = await db.rows<{ id: string; stages: { index: number; reads?: number[] }[]; options: { stopAfter?: unknown } | null }>(sql`
    SELECT id, stages, options FROM runs WHERE id = ${anyText(runIds)}`);
  return Promise.all(runs.map((run) => progressOf(db, run)));
}

async function progressOf(db: Database, run: { id: string; stages: { index: number; reads?: number[] }[]; options: { stopAfter?: unknown } | null }): Promise<RunProgress> {
  const last = typeof run.options?.stopAfter === "number" ? run.options.stopAfter : run.stages.length - 1;
  const stages = Math.max(last + 1, 1);
  const chain = isChain(recordedReads(run.stages.slice(0, stages)));
  const advancing = textArray(ADVANCING);
  const [row] = await db.rows<{ items: number; settled: number; skipped: number; ended: number }>(sql`
    SELECT (SELECT count(*) FROM run_items i WHERE i.run_id = ${run.id})::int AS items,
      count(*)::float8 AS settled,
      coalesce(sum(${last}::int - w.stage_index) FILTER (WHERE w.status <> ALL (${advancing}::text[])), 0)::float8 AS skipped,
      (count(*) FILTER (WHERE w.status <> ALL (${advancing}::text[]) OR w.stage_index = ${last}::int))::int AS ended
    FROM work w
    WHERE w.run_id = ${run.id} AND w.stage_index <= ${last}::int AND w.status <> ALL (${textArray(["queued", "processing", "failed_retryable"])}::text[])`);
  const { items, settled, skipped, ended } = row!;
  const steps = chain ? settled + skipped : settled;
  return { run_id: run.id, items, ...(chain ? { ended } : {}), share: items ? Math.min(1, steps / (items * stages)) : 0 };
}

/** Dead letters per run, for the runs that have any, newest run first. */
export async function deadLetterCountsByRun(db: Database, limit: number): Promise<{ run_id: string; pipeline: string; created_at: string; n: number }[]> {
  return db.rows<{ run_id: string; pipeline: string; created_at: string; n: number }>(sql`
    SELECT r.id AS run_id, r.pipeline, r.created_at, count(*)::int AS n
    FROM runs r JOIN work w ON w.run_id = r.id AND w.status = 'failed_terminal'
    GROUP BY r.id, r.pipeline, r.created_at ORDER BY r.created_at DESC LIMIT ${limit}`);
}

/**
 * One page of a run's items with their status at the last stage they
 * reached, in id order, optionally only those with a given final status:
 * the first page, the page after `after`, or the page before `before`.
 */
export async function itemPage(
  db: Database, runId: string, q: { after?: string; before?: string; limit: number; status?: string }, carried: readonly (readonly [number, number])[] = [],
): Promise<{ item_id: string; line: number; status: string; stage_id: string | null }[]> {
  // With branches, where each item ended as the summary counts it (see `endingRowOrder`).
  const order = carried.length ? endingRowOrder(carried) : sql`stage_index DESC`;
  const rows = await db.rows<{ item_id: string; line: number; status: string; stage_id: string | null }>(sql`
    SELECT i.item_id, i.line, coalesce(f.status, 'queued') AS status, f.stage_id FROM run_items i
    LEFT JOIN LATERAL (SELECT status, stage_id FROM work w WHERE w.run_id = i.run_id AND w.item_id = i.item_id ORDER BY ${order} LIMIT 1) f ON true
    WHERE i.run_id = ${runId} ${q.after === undefined ? sql`` : sql`AND i.item_id > ${q.after}`}
      ${q.before === undefined ? sql`` : sql`AND i.item_id < ${q.before}`}
      ${q.status === undefined ? sql`` : sql`AND coalesce(f.status, 'queued') = ${q.status}`}
    ORDER BY i.item_id ${q.before === undefined ? sql`` : sql`DESC`} LIMIT ${q.limit}`);
  return q.before === undefined ? rows : rows.reverse();
}

// --- one item ----------------------------------------------------------------

/** An item as the run read it. */
export async function runItem(db: Database, runId: string, itemId: string): Promise<{ line: number; content_hash: string; data: unknown } | undefined> {
  const rows = await db.rows<{ line: number; content_hash: string; data: unknown }>(sql`
    SELECT line, content_hash, data FROM run_items WHERE run_id = ${runId} AND item_id = ${itemId}`);
  return rows[0];
}

export interface ItemStageRow {
  stage_index: number;
  stage_id: string;
  status: string;
  reused: boolean;
  attempts: number;
  error_class: string | null;
  error_message: string | null;
  input_hash: string | null;
  updated_at: string;
  /** The output the work row points at (null columns when none). */
  output: unknown;
  output_version: string | null;
  output_cost: number | null;
  output_run: string | null;
}

/** An item's work rows in a run, in stage order, with the output each points at. */
export async function itemStages(db: Database, runId: string, itemId: string): Promise<ItemStageRow[]> {
  return db.rows<ItemStageRow>(sql`
    SELECT w.stage_index, w.stage_id, w.status, w.reused, w.attempts, w.error_class, w.error_message, w.input_hash, w.updated_at,
      o.output, o.stage_version AS output_version, o.cost_usd AS output_cost, o.run_id AS output_run
    FROM work w LEFT JOIN stage_outputs o ON o.id = w.output_id
    WHERE w.run_id = ${runId} AND w.item_id = ${itemId} ORDER BY w.stage_index`);
}

export interface ItemAttemptRow {
  stage_id: string;
  attempt: number;
  provider: string | null;
  model: string | null;
  mode: string | null;
  request_hash: string | null;
  input_tokens: number;
  output_tokens: number;
  cached_tokens: number;
  cost_usd: number;
  latency_ms: number;
  error_class: string | null;
  error_message: string | null;
  created_at: string;
  /** The answer the request cache holds for the request (null when none was kept). */
  response: unknown;
}

/** An item's attempts in a run, oldest first, each with the cached answer to its request. */
export async function itemAttempts(db: Database, runId: string, itemId: string): Promise<ItemAttemptRow[]> {
  return db.rows<ItemAttemptRow>(sql`
    SELECT a.stage_id, a.attempt, a.provider, a.model, a.mode, a.request_hash, a.input_tokens, a.output_tokens, a.cached_tokens,
      a.cost_usd, a.latency_ms, a.error_class, a.error_message, a.created_at, c.response
    FROM attempts a LEFT JOIN request_cache c ON c.request_hash = a.request_hash AND a.error_class IS NULL
    WHERE a.run_id = ${runId} AND a.item_id = ${itemId} ORDER BY a.id`);
}
