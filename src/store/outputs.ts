import { sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { anyInt, idRows } from "./sql.ts";

/**
 * `stage_outputs`: every output a stage version produced, keyed by (pipeline,
 * stage, stage version, item, input hash) and never deleted: what the reuse
 * rule (`src/engine/reuse.ts`) looks up before any model call. New rows are
 * written with a stage's results (`results.ts`).
 */

/** A stage version of a pipeline: the first three parts of an output's key. */
export interface StageVersionRef {
  pipeline: string;
  stageId: string;
  version: string;
}

export interface OutputMatch {
  id: number;
  status: string;
}

/**
 * The output of a stage version for each item whose input hash is `wanted`:
 * one index probe per item on (stage version, item); the input hash is
 * matched here.
 */
export async function outputsForInputs(db: Database, at: StageVersionRef, wanted: ReadonlyMap<string, string>): Promise<Map<string, OutputMatch>> {
  const found = new Map<string, OutputMatch>();
  if (wanted.size === 0) return found;
  const rows = await db.rows<{ id: number | string; item_id: string; input_hash: string; status: string }>(sql`
    SELECT s.*
    FROM ${idRows([...wanted.keys()])}
    CROSS JOIN LATERAL (
      SELECT id, item_id, input_hash, status FROM stage_outputs
      WHERE pipeline = ${at.pipeline} AND stage_id = ${at.stageId} AND stage_version = ${at.version}
        AND item_id = i.item_id OFFSET 0) s`);
  for (const row of rows) {
    if (wanted.get(row.item_id) !== row.input_hash) continue;
    found.set(row.item_id, { id: Number(row.id), status: row.status });
  }
  return found;
}

export interface StoredOutputRow {
  id: number;
  stageId: string;
  itemId: string;
  inputHash: string;
  status: string;
  value: unknown;
  hash: string;
}

/** Every output stored for these stage versions and items, whatever its input hash, with its value. */
export async function outputsOfItems(db: Database, pipeline: string, stages: readonly { id: string; version: string }[], itemIds: readonly string[]): Promise<StoredOutputRow[]> {
  if (itemIds.length === 0 || stages.length === 0) return [];
  const versions = JSON.stringify(stages.map((s) => ({ stage_id: s.id, stage_version: s.version })));
  const rows = await db.rows<{ id: number | string; stage_id: string; item_id: string; input_hash: string; status: string; output: unknown; output_hash: string }>(sql`
    SELECT s.*
    FROM jsonb_to_recordset(${versions}::jsonb) AS v(stage_id text, stage_version text)
    CROSS JOIN ${idRows(itemIds)}
    CROSS JOIN LATERAL (
      SELECT id, stage_id, item_id, input_hash, status, output, output_hash FROM stage_outputs
      WHERE pipeline = ${pipeline} AND stage_id = v.stage_id AND stage_version = v.stage_version
        AND item_id = i.item_id OFFSET 0) s`);
  return rows.map((r) => ({ id: Number(r.id), stageId: r.stage_id, itemId: r.item_id, inputHash: r.input_hash, status: r.status, value: r.output ?? null, hash: r.output_hash }));
}

/** The outputs this run used at the given stages (by index) for these items: what later stages read. */
export async function upstreamOutputs(db: Database, runId: string, stageIndexes: readonly number[], itemIds: readonly string[]): Promise<{ item_id: string; stage_id: string; output: unknown; output_hash: string }[]> {
  if (stageIndexes.length === 0 || itemIds.length === 0) return [];
  return db.rows(sql`
    SELECT w.item_id, w.stage_id, o.output, o.output_hash
    FROM ${idRows(itemIds)}
    CROSS JOIN LATERAL (
      SELECT item_id, stage_id, output_id FROM work
      WHERE run_id = ${runId} AND stage_index = ${anyInt(stageIndexes)} AND item_id = i.item_id OFFSET 0) w
    CROSS JOIN LATERAL (
      SELECT output, output_hash FROM stage_outputs WHERE id = w.output_id OFFSET 0) o`);
}
