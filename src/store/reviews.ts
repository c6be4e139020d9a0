import { sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { anyText } from "./sql.ts";

/**
 * Review decisions (`review_decisions`): a person's approve, reject or edit
 * of an item a stage sent to review. A decision is keyed like the stage
 * output it judges (pipeline, stage, stage version, item, input hash), so it
 * holds in every run where that output is unchanged; the latest one for a key
 * is in force. The engine applies them when it writes a stage's results
 * (`engine/review.ts`); the review commands read the queue here.
 */

export type Decision = "approve" | "reject" | "edit";

export interface DecisionRow {
  id: number;
  decision: Decision;
  edits: Record<string, unknown> | null;
  reviewer: string;
  note: string | null;
}

export interface NewDecision {
  pipeline: string;
  stageId: string;
  stageVersion: string;
  itemId: string;
  inputHash: string;
  decision: Decision;
  edits?: Record<string, unknown>;
  reviewer: string;
  note?: string;
  runId?: string;
}

/** Record decisions; each one is in force from now on for its key. Returns their ids. */
export async function recordDecisions(db: Database, decisions: readonly NewDecision[]): Promise<number[]> {
  if (decisions.length === 0) return [];
  const rows = await db.rows<{ id: number }>(sql`
    INSERT INTO review_decisions (pipeline, stage_id, stage_version, item_id, input_hash, decision, edits, reviewer, note, run_id)
    SELECT d.pipeline, d."stageId", d."stageVersion", d."itemId", d."inputHash", d.decision, d.edits, d.reviewer, d.note, d."runId"
    FROM jsonb_to_recordset(${JSON.stringify(decisions)}::jsonb) AS d(pipeline text, "stageId" text, "stageVersion" text, "itemId" text, "inputHash" text, decision text, edits jsonb, reviewer text, note text, "runId" text)
    RETURNING id`);
  return rows.map((r) => Number(r.id));
}

/** The decision in force for each of these items' outputs at one stage version, by item. */
export async function decisionsInForce(
  db: Database,
  at: { pipeline: string; stageId: string; stageVersion: string },
  items: readonly { itemId: string; inputHash: string }[],
): Promise<Map<string, DecisionRow>> {
  const found = new Map<string, DecisionRow>();
  if (items.length === 0) return found;
  const rows = await db.rows<DecisionRow & { item_id: string; input_hash: string }>(sql`
    SELECT DISTINCT ON (item_id, input_hash) id, item_id, input_hash, decision, edits, reviewer, note
    FROM review_decisions
    WHERE pipeline = ${at.pipeline} AND stage_id = ${at.stageId} AND stage_version = ${at.stageVersion}
      AND item_id = ${anyText(items.map((i) => i.itemId))}
    ORDER BY item_id, input_hash, id DESC`);
  const wanted = new Map(items.map((i) => [i.itemId, i.inputHash]));
  for (const r of rows) {
    if (wanted.get(r.item_id) === r.input_hash) found.set(r.item_id, { id: Number(r.id), decision: r.decision, edits: r.edits, reviewer: r.reviewer, note: r.note });
  }
  return found;
}

/** The stage version a run planned for a stage, as SQL over `runs.stages` (`r` is the run). */
const versionIn = (stageId: ReturnType<typeof sql>) => sql`(SELECT e->>'version' FROM jsonb_array_elements(r.stages) e WHERE e->>'id' = ${stageId} LIMIT 1)`;

/**
 * Items of a run whose review no longer matches the decision in force: sent
 * to review and decided since, or settled by a decision that a later one
 * replaced. They go back to the queue at that stage, and their rows at later
 * stages are removed, so the run applies the decisions when it goes on.
 * Returns how many items were sent back.
 */
export async function requeueDecided(db: Database, runId: string): Promise<number> {
  return db.transaction(async (tx) => {
    const rows = await tx.rows<{ item_id: string; stage_index: number }>(sql`
      WITH current AS (
        SELECT w.item_id, w.stage_index, w.review_id, (
          SELECT d.id FROM review_decisions d
          WHERE d.pipeline = r.pipeline AND d.stage_id = w.stage_id AND d.item_id = w.item_id
            AND d.input_hash = w.input_hash AND d.stage_version = ${versionIn(sql`w.stage_id`)}
          ORDER BY d.id DESC LIMIT 1) AS in_force
        FROM work w JOIN runs r ON r.id = w.run_id
        WHERE w.run_id = ${runId} AND w.input_hash IS NOT NULL
          AND (w.status = 'needs_review' OR w.review_id IS NOT NULL)
      )
      UPDATE work w SET status = 'queued', claimed_by = NULL, not_before = NULL, review_id = NULL, updated_at = now()
      FROM current c
      WHERE w.run_id = ${runId} AND w.stage_index = c.stage_index AND w.item_id = c.item_id
        AND c.in_force IS NOT NULL AND c.in_force IS DISTINCT FROM c.review_id
      RETURNING w.item_id, w.stage_index`);
    for (const r of rows) {
      await tx.rows(sql`DELETE FROM work WHERE run_id = ${runId} AND item_id = ${r.item_id} AND stage_index > ${r.stage_index}`);
    }
    return rows.length;
  });
}

/** Edits in force for these items of a run (from the decisions that settled their reviews), by item. */
export async function editsInForce(db: Database, runId: string, itemIds: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
  const found = new Map<string, Record<string, unknown>>();
  if (itemIds.length === 0) return found;
  const rows = await db.rows<{ item_id: string; edits: Record<string, unknown> }>(sql`
    SELECT w.item_id, d.edits FROM work w JOIN review_decisions d ON d.id = w.review_id
    WHERE w.run_id = ${runId} AND w.item_id = ${anyText(itemIds)} AND w.review_id IS NOT NULL AND d.edits IS NOT NULL
    ORDER BY w.stage_index`);
  for (const r of rows) found.set(r.item_id, { ...found.get(r.item_id), ...r.edits });
  return found;
}

export interface QueueRow {
  run_id: string;
  pipeline: string;
  item_id: string;
  stage_id: string;
  stage_index: number;
  stage_version: string;
  input_hash: string;
  reason: string | null;
  /** The item's status at the stage: `needs_review`, or what a decision taken up made it. */
  status: string;
  /** The latest decision recorded for what was reviewed, if any. */
  decision: Decision | null;
  reviewer: string | null;
  /** Whether the run has taken that decision up (`sluice commit`); false while it waits for one. */
  applied: boolean;
}

/**
 * What waits for review in a run: items a stage sent to review, with the
 * reason and any decision recorded since. Filters: stage, a substring of the
 * reason; with `decided`, items already decided are included (and those a
 * decision settled, whose decision may be changed).
 */
export async function reviewQueue(db: Database, runId: string, filter: { stageId?: string; reason?: string; decided?: boolean } = {}): Promise<QueueRow[]> {
  const rows = await db.rows<QueueRow>(sql`
    SELECT * FROM (
      SELECT w.run_id, r.pipeline, w.item_id, w.stage_id, w.stage_index, ${versionIn(sql`w.stage_id`)} AS stage_version, w.input_hash,
        w.error_message AS reason, w.status, d.decision, d.reviewer, coalesce(d.id = w.review_id, false) AS applied
      FROM work w JOIN runs r ON r.id = w.run_id
      LEFT JOIN LATERAL (
        SELECT d.id, d.decision, d.reviewer FROM review_decisions d
        WHERE d.pipeline = r.pipeline AND d.stage_id = w.stage_id AND d.item_id = w.item_id
          AND d.input_hash = w.input_hash AND d.stage_version = ${versionIn(sql`w.stage_id`)}
        ORDER BY d.id DESC LIMIT 1) d ON TRUE
      WHERE w.run_id = ${runId} AND (w.status = 'needs_review' OR (${filter.decided ? sql`TRUE` : sql`FALSE`} AND w.review_id IS NOT NULL))
        ${filter.stageId ? sql`AND w.stage_id = ${filter.stageId}` : sql``}
        ${filter.reason ? sql`AND w.error_message ILIKE ${`%${filter.reason.replace(/[\\%_]/g, (c) => `\\${c}`)}%`}` : sql``}
    ) q
    ${filter.decided ? sql`` : sql`WHERE q.decision IS NULL`}
    ORDER BY q.item_id`);
  return rows;
}

export interface ItemStageRow {
  stage_index: number;
  stage_id: string;
  status: string;
  input_hash: string | null;
  reused: boolean;
  error_class: string | null;
  error_message: string | null;
  output: unknown;
  review_id: number | null;
}

export interface ItemAttemptRow {
  stage_id: string;
  attempt: number;
  provider: string | null;
  model: string | null;
  mode: string;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
  error_class: string | null;
  error_message: string | null;
}

/** One item of a run as a reviewer sees it: its input, every stage's row and output, every attempt. */
export async function reviewItem(db: Database, runId: string, itemId: string): Promise<{ input: unknown; stages: ItemStageRow[]; attempts: ItemAttemptRow[] } | undefined> {
  const [item] = await db.rows<{ data: unknown }>(sql`SELECT data FROM run_items WHERE run_id = ${runId} AND item_id = ${itemId}`);
  if (!item) return undefined;
  const stages = await db.rows<ItemStageRow>(sql`
    SELECT w.stage_index, w.stage_id, w.status, w.input_hash, w.reused, w.error_class, w.error_message, o.output, w.review_id
    FROM work w LEFT JOIN stage_outputs o ON o.id = w.output_id
    WHERE w.run_id = ${runId} AND w.item_id = ${itemId} ORDER BY w.stage_index`);
  const attempts = await db.rows<ItemAttemptRow>(sql`
    SELECT stage_id, attempt, provider, model, mode, input_tokens, output_tokens, cost_usd, error_class, error_message
    FROM attempts WHERE run_id = ${runId} AND item_id = ${itemId} ORDER BY id`);
  return { input: item.data, stages, attempts };
}

export interface LabelledItem {
  item_id: string;
  /** The stage that sent the item to review. */
  stage_id: string;
  decision: Decision;
  edits: Record<string, unknown> | null;
  reviewer: string;
  note: string | null;
  decided_at: string;
  run_id: string | null;
  /** The item as the reviewed run loaded it. */
  input: unknown;
  /** Every stage's output for the item in the reviewed run, by stage id. */
  outputs: Record<string, unknown> | null;
}

/**
 * The labelled set: for each item of a pipeline a person decided, the
 * decision in force (the latest per item and reviewed stage), with the item
 * and every stage's output as the reviewed run had them.
 */
export async function labelledItems(db: Database, pipeline: string): Promise<LabelledItem[]> {
  return db.rows<LabelledItem>(sql`
    SELECT d.item_id, d.stage_id, d.decision, d.edits, d.reviewer, d.note, d.decided_at, d.run_id, i.data AS input,
      (SELECT jsonb_object_agg(w.stage_id, o.output) FROM work w JOIN stage_outputs o ON o.id = w.output_id
        WHERE w.run_id = d.run_id AND w.item_id = d.item_id) AS outputs
    FROM (
      SELECT DISTINCT ON (stage_id, item_id) * FROM review_decisions WHERE pipeline = ${pipeline}
      ORDER BY stage_id, item_id, id DESC) d
    LEFT JOIN run_items i ON i.run_id = d.run_id AND i.item_id = d.item_id
    ORDER BY d.item_id, d.stage_id`);
}

/** Runs with items a stage sent to review, newest first: how many wait for a decision and how many were decided since (not yet taken up). */
export async function reviewCountsByRun(db: Database, limit: number): Promise<{ run_id: string; pipeline: string; created_at: string; waiting: number; decided: number }[]> {
  return db.rows<{ run_id: string; pipeline: string; created_at: string; waiting: number; decided: number }>(sql`
    SELECT q.run_id, q.pipeline, q.created_at, count(*) FILTER (WHERE NOT q.decided)::int AS waiting, count(*) FILTER (WHERE q.decided)::int AS decided
    FROM (
      SELECT r.id AS run_id, r.pipeline, r.created_at, EXISTS (
        SELECT 1 FROM review_decisions d
        WHERE d.pipeline = r.pipeline AND d.stage_id = w.stage_id AND d.item_id = w.item_id
          AND d.input_hash = w.input_hash AND d.stage_version = ${versionIn(sql`w.stage_id`)}) AS decided
      FROM runs r JOIN work w ON w.run_id = r.id AND w.status = 'needs_review'
    ) q
    GROUP BY q.run_id, q.pipeline, q.created_at ORDER BY q.created_at DESC LIMIT ${limit}`);
}
