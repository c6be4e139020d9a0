import { sql, type SQL } from "drizzle-orm";
import type { Database } from "./database.ts";
import { textArray } from "./sql.ts";
import { targetColumnsOf, targetName } from "./targets.ts";

/**
 * The commit ledger (`target_ledger`): every write to a commit target with the
 * whole row before and after, recorded in the statement that made it (see
 * `targets.ts`, `ledgerOf`). `revertRun` replays one run's entries backwards;
 * `keyHistory` reads one key's.
 */

export interface LedgerEntry {
  id: number;
  run_id: string;
  op: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  at: string;
}

/** The targets a pipeline's runs wrote to. */
export async function targetsOf(db: Database, pipeline: string): Promise<string[]> {
  const rows = await db.rows<{ target: string }>(sql`
    SELECT DISTINCT l.target FROM target_ledger l JOIN runs r ON r.id = l.run_id WHERE r.pipeline = ${pipeline} ORDER BY l.target`);
  return rows.map((r) => r.target);
}

/** Every write to one key of a target, oldest first. */
export async function keyHistory(db: Database, target: string, key: string): Promise<LedgerEntry[]> {
  return db.rows<LedgerEntry>(sql`
    SELECT id, run_id, op, before, after, at FROM target_ledger WHERE target = ${target} AND key = ${key} ORDER BY id`);
}

export interface RevertPlan {
  target: string;
  /** Keys the run changed. */
  keys: number;
  /** Keys changed since by another run (their current row is not what this run left). */
  conflicts: string[];
}

/** What reverting a run would touch, target by target, and which keys later runs changed since. */
export async function revertPlan(db: Database, runId: string): Promise<RevertPlan[]> {
  const targets = await db.rows<{ target: string }>(sql`SELECT DISTINCT target FROM target_ledger WHERE run_id = ${runId} ORDER BY target`);
  const plans: RevertPlan[] = [];
  for (const { target } of targets) {
    const rows = await db.rows<{ key: string; conflict: boolean }>(sql`
      WITH span AS (
        SELECT key, (array_agg(after ORDER BY id DESC))[1] AS left_as FROM target_ledger WHERE run_id = ${runId} AND target = ${target} GROUP BY key)
      SELECT s.key, (${sameRow(sql`s.left_as`, sql`to_jsonb(t)`)}) IS NOT TRUE AS conflict
      FROM span s LEFT JOIN ${targetName(target)} t ON t.key = s.key
      ORDER BY s.key`);
    plans.push({ target, keys: rows.length, conflicts: rows.filter((r) => r.conflict).map((r) => r.key) });
  }
  return plans;
}

/** Two rows (as jsonb, either may be null) hold the same content: item, data and status (not the bookkeeping columns). */
const BOOKKEEPING = textArray(["committed_at", "withdrawn_at", "run_id", "stage_version"]);
function sameRow(a: SQL, b: SQL): SQL {
  return sql`coalesce((${a}) - ${BOOKKEEPING}::text[], 'null'::jsonb) = coalesce((${b}) - ${BOOKKEEPING}::text[], 'null'::jsonb)`;
}

/**
 * Restore every key a run changed to what it held before the run (deleting
 * keys the run created), recording each restore in the ledger under
 * `revertRunId`, itself recorded as a finished run of the pipeline. In one
 * transaction. Returns the keys restored per target.
 */
export async function revertRun(db: Database, runId: string, revert: { revertRunId: string; pipeline: string }): Promise<{ target: string; restored: number; deleted: number }[]> {
  return db.transaction(async (tx) => {
    await tx.rows(sql`
      INSERT INTO runs (id, pipeline, status, stages, options, loaded_at, finished_at)
      VALUES (${revert.revertRunId}, ${revert.pipeline}, 'finished', '[]'::jsonb, ${JSON.stringify({ revertOf: runId })}::jsonb, now(), now())`);
    return revertTargets(tx, runId, revert.revertRunId);
  });
}

/**
 * `revertRun` for targets kept in another database (`target.url`), whose
 * ledger lives with them: the restores, in one transaction there. The revert
 * run itself is recorded in the store by `revertRun`.
 */
export function revertTargetsElsewhere(db: Database, runId: string, revertRunId: string): Promise<{ target: string; restored: number; deleted: number }[]> {
  return db.transaction((tx) => revertTargets(tx, runId, revertRunId));
}

async function revertTargets(tx: Database, runId: string, revertRunId: string): Promise<{ target: string; restored: number; deleted: number }[]> {
  const targets = await tx.rows<{ target: string }>(sql`SELECT DISTINCT target FROM target_ledger WHERE run_id = ${runId} ORDER BY target`);
  const out: { target: string; restored: number; deleted: number }[] = [];
  for (const { target } of targets) {
    const name = targetName(target);
    const columns = (await targetColumnsOf(tx, target)).map((c) => c.column_name);
    const set = sql.join(
      columns.filter((c) => c !== "key").map((c) => sql`${sql.identifier(c)} = excluded.${sql.identifier(c)}`),
      sql`, `,
    );
    const [counts] = await tx.rows<{ restored: number; deleted: number }>(sql`
      WITH span AS (
        SELECT key, (array_agg(before ORDER BY id))[1] AS before FROM target_ledger WHERE run_id = ${runId} AND target = ${target} GROUP BY key),
      cur AS (SELECT s.key, s.before, to_jsonb(t) AS now FROM span s LEFT JOIN ${name} t ON t.key = s.key),
      del AS (DELETE FROM ${name} t USING cur WHERE t.key = cur.key AND cur.before IS NULL RETURNING t.key),
      ups AS (
        INSERT INTO ${name} AS tgt SELECT (jsonb_populate_record(NULL::${name}, cur.before)).* FROM cur WHERE cur.before IS NOT NULL
        ON CONFLICT (key) DO UPDATE SET ${set}
        RETURNING tgt.key, to_jsonb(tgt) AS row),
      led AS (
        INSERT INTO target_ledger (run_id, target, key, op, before, after)
        SELECT ${revertRunId}, ${target}, cur.key, 'revert', cur.now, u.row FROM cur LEFT JOIN ups u ON u.key = cur.key
        WHERE cur.now IS DISTINCT FROM cur.before)
      SELECT (SELECT count(*) FROM ups)::int AS restored, (SELECT count(*) FROM del)::int AS deleted`);
    out.push({ target, restored: counts!.restored, deleted: counts!.deleted });
  }
  return out;
}
