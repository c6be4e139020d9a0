import { sql, type SQL } from "drizzle-orm";
import { ADVANCING } from "../core/status.ts";
import type { Database } from "./database.ts";
import type { AttemptRow } from "./results.ts";
import { anyText } from "./sql.ts";

/**
 * What was spent and what it bought: the reads behind `sluice cost`,
 * `sluice estimate` and `sluice drift`, and the one write of paid calls made
 * outside a run (`sluice compare`'s sample). Every paid call is a row of
 * `attempts`; a call made in a run takes the run's pipeline, one made outside
 * a run carries its own (`attempts.pipeline`).
 */

// --- roll-ups (sluice cost) --------------------------------------------------

export type CostDimension = "pipeline" | "stage" | "run" | "day" | "model";

export interface CostFilter {
  pipeline?: string;
  /** One run's. */
  runId?: string;
  /** Calls made on or after this instant (ISO), and reuse by runs that wrote on or after it. */
  since?: string;
}

export interface PaidRow {
  pipeline: string | null;
  stage_id: string | null;
  run_id: string | null;
  day: string | null;
  model: string | null;
  calls: number;
  batch_calls: number;
  failed_calls: number;
  input_tokens: number;
  output_tokens: number;
  cost: number;
  list_cost: number;
  batch_saved: number;
}

const PIPELINE_OF_ATTEMPT = sql`coalesce(a.pipeline, r.pipeline)`;

/** Grouped by these dimensions together (`["stage", "model"]`: one group per stage and model); a stage or a run is also grouped by its pipeline. */
export type CostGrouping = CostDimension | readonly CostDimension[];

function dimensionsOf(by: CostGrouping): { has: (d: CostDimension) => boolean; pipeline: boolean } {
  const dims = new Set(typeof by === "string" ? [by] : by);
  return { has: (d) => dims.has(d), pipeline: dims.has("pipeline") || dims.has("stage") || dims.has("run") };
}

function attemptKeys(by: CostGrouping): { pipeline: SQL; stage: SQL; run: SQL; day: SQL; model: SQL } {
  const none = sql`NULL::text`;
  const d = dimensionsOf(by);
  return {
    pipeline: d.pipeline ? PIPELINE_OF_ATTEMPT : none,
    stage: d.has("stage") ? sql`a.stage_id` : none,
    run: d.has("run") ? sql`a.run_id` : none,
    day: d.has("day") ? sql`to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')` : none,
    model: d.has("model") ? sql`a.model` : none,
  };
}

/**
 * Provider requests grouped by one dimension: calls, tokens, what was paid,
 * the realtime list price of the same usage, and the batch discount (list
 * price less price paid, on batch calls). Requests that failed before an
 * answer (no provider row, no tokens) are counted in `failed_calls`.
 */
export async function paidByDimension(db: Database, by: CostGrouping, filter: CostFilter = {}): Promise<PaidRow[]> {
  const k = attemptKeys(by);
  return db.rows<PaidRow>(sql`
    SELECT ${k.pipeline} AS pipeline, ${k.stage} AS stage_id, ${k.run} AS run_id, ${k.day} AS day, ${k.model} AS model,
      (count(*) FILTER (WHERE a.provider IS NOT NULL))::int AS calls,
      (count(*) FILTER (WHERE a.mode = 'batch'))::int AS batch_calls,
      (count(*) FILTER (WHERE a.error_class IS NOT NULL))::int AS failed_calls,
      coalesce(sum(a.input_tokens), 0)::float8 AS input_tokens, coalesce(sum(a.output_tokens), 0)::float8 AS output_tokens,
      coalesce(sum(a.cost_usd), 0)::float8 AS cost, coalesce(sum(a.list_cost_usd), 0)::float8 AS list_cost,
      coalesce(sum(a.list_cost_usd - a.cost_usd) FILTER (WHERE a.mode = 'batch'), 0)::float8 AS batch_saved
    FROM attempts a LEFT JOIN runs r ON r.id = a.run_id
    WHERE TRUE ${filter.pipeline === undefined ? sql`` : sql`AND ${PIPELINE_OF_ATTEMPT} = ${filter.pipeline}`}
      ${filter.runId === undefined ? sql`` : sql`AND a.run_id = ${filter.runId}`}
      ${filter.since === undefined ? sql`` : sql`AND a.created_at >= ${filter.since}::timestamptz`}
    GROUP BY 1, 2, 3, 4, 5`);
}

export interface SavedRow {
  pipeline: string | null;
  stage_id: string | null;
  run_id: string | null;
  day: string | null;
  model: string | null;
  /** Items that took an output stored by another run (the reuse rule): no request built, nothing paid. */
  reused: number;
  reuse_saved: number;
  /** Items answered by the request cache or by an identical request of the same run. */
  cache_hits: number;
  cache_saved: number;
}

/**
 * What the reuse rule and the request cache saved, grouped like
 * `paidByDimension`. Counted at model stages only: stage versions some of
 * whose outputs cost money. A reused output saved what it cost when it was
 * made (or, if it was itself free, what an output of its stage version costs
 * on average); a request-cache hit saved that average.
 */
export async function savedByDimension(db: Database, by: CostGrouping, filter: CostFilter = {}): Promise<SavedRow[]> {
  const none = sql`NULL::text`;
  const d = dimensionsOf(by);
  const keys = {
    pipeline: d.pipeline ? sql`r.pipeline` : none,
    stage: d.has("stage") ? sql`w.stage_id` : none,
    run: d.has("run") ? sql`w.run_id` : none,
    day: d.has("day") ? sql`to_char(w.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')` : none,
    model: d.has("model") ? sql`(SELECT s.value->'parts'->>'model' FROM jsonb_array_elements(r.stages) s WHERE s.value->>'id' = w.stage_id LIMIT 1)` : none,
  };
  return db.rows<SavedRow>(sql`
    WITH priced AS (
      SELECT pipeline, stage_id, stage_version, avg(cost_usd) AS avg_cost FROM stage_outputs WHERE cost_usd > 0
      GROUP BY 1, 2, 3)
    SELECT ${keys.pipeline} AS pipeline, ${keys.stage} AS stage_id, ${keys.run} AS run_id, ${keys.day} AS day, ${keys.model} AS model,
      (count(*) FILTER (WHERE o.run_id <> w.run_id))::int AS reused,
      coalesce(sum(coalesce(nullif(o.cost_usd, 0), p.avg_cost)) FILTER (WHERE o.run_id <> w.run_id), 0)::float8 AS reuse_saved,
      (count(*) FILTER (WHERE o.run_id = w.run_id))::int AS cache_hits,
      coalesce(sum(p.avg_cost) FILTER (WHERE o.run_id = w.run_id), 0)::float8 AS cache_saved
    FROM work w
    JOIN runs r ON r.id = w.run_id
    JOIN stage_outputs o ON o.id = w.output_id
    JOIN priced p ON p.pipeline = o.pipeline AND p.stage_id = o.stage_id AND p.stage_version = o.stage_version
    WHERE w.reused ${filter.pipeline === undefined ? sql`` : sql`AND r.pipeline = ${filter.pipeline}`}
      ${filter.runId === undefined ? sql`` : sql`AND w.run_id = ${filter.runId}`}
      ${filter.since === undefined ? sql`` : sql`AND w.updated_at >= ${filter.since}::timestamptz`}
    GROUP BY 1, 2, 3, 4, 5`);
}

export interface ItemAttemptRow {
  run_id: string;
  pipeline: string | null;
  stage_id: string;
  attempt: number;
  model: string | null;
  mode: string | null;
  input_tokens: number;
  output_tokens: number;
  cost: number;
  list_cost: number;
  error_class: string | null;
  created_at: string;
}

/** Every provider request made for one item, oldest first, whichever run (or compare) made it. */
export async function itemAttempts(db: Database, itemId: string, pipeline?: string): Promise<ItemAttemptRow[]> {
  return db.rows<ItemAttemptRow>(sql`
    SELECT a.run_id, ${PIPELINE_OF_ATTEMPT} AS pipeline, a.stage_id, a.attempt, a.model, a.mode, a.input_tokens, a.output_tokens,
      a.cost_usd::float8 AS cost, a.list_cost_usd::float8 AS list_cost, a.error_class, a.created_at
    FROM attempts a LEFT JOIN runs r ON r.id = a.run_id
    WHERE a.item_id = ${itemId} ${pipeline === undefined ? sql`` : sql`AND ${PIPELINE_OF_ATTEMPT} = ${pipeline}`}
    ORDER BY a.created_at, a.id`);
}

export interface ItemStageRow {
  run_id: string;
  pipeline: string;
  stage_id: string;
  status: string;
  reused: boolean;
  /** What the output the item used cost when it was made (null without an output). */
  output_cost: number | null;
  /** The run that made that output. */
  made_in: string | null;
  run_created_at: string;
}

/** One item's work rows in every run, with the output each used and where it was made. */
export async function itemStages(db: Database, itemId: string, pipeline?: string): Promise<ItemStageRow[]> {
  return db.rows<ItemStageRow>(sql`
    SELECT w.run_id, r.pipeline, w.stage_id, w.status, w.reused, o.cost_usd::float8 AS output_cost, o.run_id AS made_in, r.created_at AS run_created_at
    FROM work w JOIN runs r ON r.id = w.run_id LEFT JOIN stage_outputs o ON o.id = w.output_id
    WHERE w.item_id = ${itemId} ${pipeline === undefined ? sql`` : sql`AND r.pipeline = ${pipeline}`}
    ORDER BY r.created_at, w.run_id, w.stage_index`);
}

// --- paid calls a stopped process never wrote (its journal) ------------------

/** A realtime call a stopped process made, as its journal tells it: an attempt of its run (`mode` realtime, no latency known). */
export type JournaledAttempt = Omit<AttemptRow, "mode" | "latencyMs"> & { runId: string; stageId: string; itemId: string };

/**
 * Record the realtime calls a process paid for and was stopped before it
 * wrote (replayed from its journal): so what a run cost counts them. The
 * items themselves are then answered from the request cache.
 */
export async function recordJournaledAttempts(db: Database, attempts: readonly JournaledAttempt[]): Promise<void> {
  if (attempts.length === 0) return;
  await db.rows(sql`
    INSERT INTO attempts (run_id, stage_id, item_id, attempt, provider, model, mode, request_hash, input_tokens, output_tokens, cached_tokens, cost_usd, list_cost_usd, latency_ms, error_class, error_message)
    SELECT a."runId", a."stageId", a."itemId", a.attempt, a.provider, a.model, 'realtime', a."requestHash", a."inputTokens", a."outputTokens", a."cachedTokens", a."costUsd", a."listCostUsd", 0, a."errorClass", a."errorMessage"
    FROM jsonb_to_recordset(${JSON.stringify(attempts)}::jsonb) AS a("runId" text, "stageId" text, "itemId" text, attempt int, provider text, model text, "requestHash" text, "inputTokens" int, "outputTokens" int, "cachedTokens" int, "costUsd" float8, "listCostUsd" float8, "errorClass" text, "errorMessage" text)
    -- Only for runs of this store (a journal's run is always one, unless its run was deleted since).
    WHERE EXISTS (SELECT 1 FROM runs r WHERE r.id = a."runId")`);
}

// --- paid calls outside a run (sluice compare) ------------------------------

/** Record the provider requests made for one item outside a run (a compare's sample), under `callerId` and the pipeline. */
export async function recordOutsideAttempts(db: Database, to: { callerId: string; pipeline: string; stageId: string; itemId: string }, attempts: readonly AttemptRow[]): Promise<void> {
  if (attempts.length === 0) return;
  await db.rows(sql`
    INSERT INTO attempts (run_id, pipeline, stage_id, item_id, attempt, provider, model, mode, request_hash, input_tokens, output_tokens, cached_tokens, cost_usd, list_cost_usd, latency_ms, error_class, error_message)
    SELECT ${to.callerId}, ${to.pipeline}, ${to.stageId}, ${to.itemId}, a.attempt, NULLIF(a.provider, ''), NULLIF(a.model, ''), a.mode, a."requestHash", a."inputTokens", a."outputTokens", a."cachedTokens", a."costUsd", a."listCostUsd", a."latencyMs", a."errorClass", a."errorMessage"
    FROM jsonb_to_recordset(${JSON.stringify(attempts)}::jsonb) AS a(attempt int, provider text, model text, mode text, "requestHash" text, "inputTokens" int, "outputTokens" int, "cachedTokens" int, "costUsd" float8, "listCostUsd" float8, "latencyMs" int, "errorClass" text, "errorMessage" text)`);
}

// --- history for estimates ---------------------------------------------------

export interface StageFlow {
  stage_id: string;
  /** Items that reached the stage (a work row there). */
  rows: number;
  /** Items the stage looked at: its gate let them through. */
  handled: number;
  /** Items that went on to the next stage. */
  advanced: number;
}

/** How items flowed through each stage of a run: reached, let through by the gate, went on. */
export async function stageFlow(db: Database, runId: string): Promise<StageFlow[]> {
  return db.rows<StageFlow>(sql`
    SELECT stage_id, count(*)::int AS rows, (count(*) FILTER (WHERE input_hash IS NOT NULL))::int AS handled,
      (count(*) FILTER (WHERE status = ${anyText(ADVANCING)}))::int AS advanced
    FROM work WHERE run_id = ${runId} GROUP BY stage_id`);
}

export interface AnswerStats {
  /** Answered requests observed (tokens were billed). */
  answers: number;
  /** Distinct (run, item) pairs they were made for: `answers / calls` is the paid attempts per item called. */
  calls: number;
  mean_output: number;
  sd_output: number;
  mean_input: number;
}

/**
 * Output tokens of the most recent answered requests of a stage and model in
 * a pipeline's runs (at most `limit`), and how many paid attempts an item
 * took (repairs and retries of answered requests).
 */
export async function answerStats(db: Database, q: { pipeline: string; stageId: string; model: string; limit: number }): Promise<AnswerStats> {
  const [row] = await db.rows<AnswerStats>(sql`
    SELECT count(*)::int AS answers, count(DISTINCT (t.run_id, t.item_id))::int AS calls,
      coalesce(avg(t.output_tokens), 0)::float8 AS mean_output, coalesce(stddev_samp(t.output_tokens), 0)::float8 AS sd_output,
      coalesce(avg(t.input_tokens), 0)::float8 AS mean_input
    FROM (
      SELECT a.run_id, a.item_id, a.input_tokens, a.output_tokens FROM attempts a LEFT JOIN runs r ON r.id = a.run_id
      WHERE ${PIPELINE_OF_ATTEMPT} = ${q.pipeline} AND a.stage_id = ${q.stageId} AND a.model = ${q.model} AND a.input_tokens > 0
      ORDER BY a.id DESC LIMIT ${q.limit}) t`);
  return row!;
}

/** Input tokens the provider billed for the first attempt of each of these requests, where one was made. */
export async function billedInputTokens(db: Database, requestHashes: readonly string[]): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  if (requestHashes.length === 0) return found;
  const rows = await db.rows<{ request_hash: string; input_tokens: number }>(sql`
    SELECT DISTINCT ON (request_hash) request_hash, input_tokens FROM attempts
    WHERE request_hash = ${anyText(requestHashes)} AND attempt = 1 AND input_tokens > 0
    ORDER BY request_hash, id`);
  for (const r of rows) found.set(r.request_hash, Number(r.input_tokens));
  return found;
}

/** Every item of a run, in id order (what a rerun of it would go through). */
export async function itemsOfRun(db: Database, runId: string): Promise<{ item_id: string; data: Record<string, unknown>; content_hash: string }[]> {
  return db.rows(sql`SELECT item_id, data, content_hash FROM run_items WHERE run_id = ${runId} ORDER BY item_id`);
}

/**
 * Items of a run that met a stage's gate, with whether it let them through
 * (their work row at the stage has an input hash), newest ids last, at most
 * `limit`: what `estimate` learns a gate's odds per item from.
 */
export async function gateOutcomes(db: Database, runId: string, stageId: string, limit: number): Promise<{ data: Record<string, unknown>; passed: boolean }[]> {
  return db.rows(sql`
    SELECT ri.data, (w.input_hash IS NOT NULL) AS passed
    FROM work w JOIN run_items ri ON ri.run_id = w.run_id AND ri.item_id = w.item_id
    WHERE w.run_id = ${runId} AND w.stage_id = ${stageId}
    ORDER BY w.item_id LIMIT ${limit}`);
}

/** Mean latency of a model's latest realtime answers (at most `limit`), in milliseconds; undefined before any. */
export async function realtimeLatency(db: Database, model: string, limit: number): Promise<number | undefined> {
  const [row] = await db.rows<{ ms: number | null }>(sql`
    SELECT avg(latency_ms)::float8 AS ms FROM (
      SELECT latency_ms FROM attempts WHERE model = ${model} AND mode = 'realtime' AND input_tokens > 0 ORDER BY id DESC LIMIT ${limit}) t`);
  return row?.ms ?? undefined;
}

// --- drift ---------------------------------------------------------------------

export interface RecentRun {
  id: string;
  created_at: string;
  stages: { id: string; kind: string; version: string; parts?: Record<string, unknown> }[];
}

/** The last `n` finished runs of a pipeline, oldest first. */
export async function lastFinishedRuns(db: Database, pipeline: string, n: number): Promise<RecentRun[]> {
  const rows = await db.rows<RecentRun>(sql`
    SELECT id, created_at, stages FROM runs WHERE pipeline = ${pipeline} AND status = 'finished' AND loaded_at IS NOT NULL
    ORDER BY created_at DESC, id DESC LIMIT ${n}`);
  return rows.reverse();
}

export interface StageStatusCount {
  run_id: string;
  stage_id: string;
  status: string;
  /** The stage looked at the item (it has an input hash). */
  handled: boolean;
  n: number;
}

/** Work rows of these runs by stage and status. */
export async function statusCounts(db: Database, runIds: readonly string[]): Promise<StageStatusCount[]> {
  return db.rows<StageStatusCount>(sql`
    SELECT run_id, stage_id, status, (input_hash IS NOT NULL) AS handled, count(*)::int AS n
    FROM work WHERE run_id = ${anyText(runIds)} GROUP BY 1, 2, 3, 4`);
}

/** How many items of each run got each value of one output field at one stage. */
export async function fieldCounts(db: Database, runIds: readonly string[], stageId: string, field: string): Promise<{ run_id: string; value: string | null; n: number }[]> {
  return db.rows(sql`
    SELECT w.run_id, o.output->>${field} AS value, count(*)::int AS n
    FROM work w JOIN stage_outputs o ON o.id = w.output_id
    WHERE w.run_id = ${anyText(runIds)} AND w.stage_id = ${stageId} AND w.input_hash IS NOT NULL
    GROUP BY 1, 2`);
}

export interface OutputCostRow {
  run_id: string;
  stage_id: string;
  /** Items whose output was paid for (by this run or the one that made it): provider requests with billed tokens. */
  items: number;
  /** What those outputs cost when they were made, wherever they were made. */
  cost: number;
  input_tokens: number;
  output_tokens: number;
  /** Standard deviations over those items of their cost and of their tokens (in and out). */
  sd_cost: number;
  sd_tokens: number;
}

/**
 * Per run and stage: what the outputs the run used cost to make, and the
 * tokens their requests took, whether the run made them or reused them (a
 * run that reused everything still reports what an item costs). Outputs no
 * request was paid for (answered by the request cache, or by a function) are
 * left out: they say nothing about what computing an item costs.
 */
export async function outputCosts(db: Database, runIds: readonly string[]): Promise<OutputCostRow[]> {
  return db.rows<OutputCostRow>(sql`
    WITH used AS MATERIALIZED (
      SELECT w.run_id, w.stage_id, o.run_id AS made_in, o.item_id, o.cost_usd
      FROM work w JOIN stage_outputs o ON o.id = w.output_id
      WHERE w.run_id = ${anyText(runIds)} AND w.input_hash IS NOT NULL),
    tokens AS (
      SELECT a.run_id, a.stage_id, a.item_id, sum(a.input_tokens) AS input_tokens, sum(a.output_tokens) AS output_tokens
      FROM attempts a WHERE a.run_id IN (SELECT DISTINCT made_in FROM used)
      GROUP BY 1, 2, 3)
    SELECT u.run_id, u.stage_id, count(*)::int AS items, coalesce(sum(u.cost_usd), 0)::float8 AS cost,
      coalesce(sum(t.input_tokens), 0)::float8 AS input_tokens, coalesce(sum(t.output_tokens), 0)::float8 AS output_tokens,
      coalesce(stddev_samp(u.cost_usd), 0)::float8 AS sd_cost, coalesce(stddev_samp(t.input_tokens + t.output_tokens), 0)::float8 AS sd_tokens
    FROM used u JOIN tokens t ON t.run_id = u.made_in AND t.stage_id = u.stage_id AND t.item_id = u.item_id
    WHERE t.input_tokens > 0
    GROUP BY 1, 2`);
}
