import { sql, type SQL } from "drizzle-orm";
import type { Database } from "./database.ts";

/**
 * Commit targets: plain tables in the same database, one row per key, created
 * on first use. `status` says whether the row is current (`active`) or was
 * withdrawn because its item no longer reaches the commit stage (for example,
 * a changed gate). Only the commit stage writes here (through `results.ts`),
 * `finalizeRun` withdraws, and `revert` restores (`ledger.ts`); every one of
 * those writes records the row before and after in `target_ledger`, in the
 * same statement.
 */

export interface TargetRow {
  key: string;
  itemId: string;
  data: unknown;
}

export async function ensureTarget(db: Database, table: string): Promise<void> {
  const name = sql.identifier(table);
  // Two processes sharing a run reach this together; CREATE TABLE IF NOT EXISTS
  // is not safe against a concurrent create (both pass the check, one fails on
  // pg_type's unique index), so creates of one table are serialised.
  await db.transaction(async (tx) => {
    await tx.rows(sql`SELECT pg_advisory_xact_lock(hashtext(${`sluice:target:${table}`}))`);
    await tx.rows(sql`CREATE TABLE IF NOT EXISTS ${name} (
    key text PRIMARY KEY,
    item_id text NOT NULL,
    data jsonb NOT NULL,
    status text NOT NULL DEFAULT 'active',
    run_id text NOT NULL,
    stage_version text NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    withdrawn_at timestamptz
  )`);
  });
}

/**
 * Idempotent upsert, as a statement to embed (it returns the keys it changed
 * and their rows after): a row whose data and status are unchanged is left
 * alone, so re-running a commit (after a crash or a rerun) writes nothing
 * twice. `only` is a condition on `x.item_id`: which of the rows to write.
 * Embed `ledgerOf` beside it to record what changed.
 */
export function upsertTarget(table: string, runId: string, version: string, rows: readonly TargetRow[], only: SQL): SQL {
  const name = sql.identifier(table);
  const payload = JSON.stringify(rows.map((r) => ({ key: r.key, item_id: r.itemId, data: r.data })));
  return sql`
    INSERT INTO ${name} AS t (key, item_id, data, status, run_id, stage_version)
    SELECT x.key, x.item_id, x.data, 'active', ${runId}, ${version}
    FROM jsonb_to_recordset(${payload}::jsonb) AS x(key text, item_id text, data jsonb)
    WHERE ${only}
    ON CONFLICT (key) DO UPDATE SET
      data = excluded.data, item_id = excluded.item_id, status = 'active', run_id = excluded.run_id,
      stage_version = excluded.stage_version, committed_at = now(), withdrawn_at = NULL
    WHERE t.data IS DISTINCT FROM excluded.data OR t.status <> 'active'
    RETURNING t.key, to_jsonb(t) AS row`;
}

/**
 * The ledger rows of a write to a target, as a statement to embed beside it:
 * `written` names the CTE that returned `key, row` (the rows after). Read in
 * the same statement, the target still holds the rows before.
 */
export function ledgerOf(table: string, runId: string, written: string, op?: string): SQL {
  const name = sql.identifier(table);
  const cte = sql.identifier(written);
  return sql`
    INSERT INTO target_ledger (run_id, target, key, op, before, after)
    SELECT ${runId}, ${table}, c.key, ${op ? sql`${op}` : sql`CASE WHEN o.row IS NULL THEN 'insert' ELSE 'update' END`}, o.row, c.row
    FROM ${cte} c LEFT JOIN LATERAL (SELECT to_jsonb(t) AS row FROM ${name} t WHERE t.key = c.key) o ON TRUE`;
}

/**
 * Withdraw target rows of items this run read but did not commit (gated out,
 * failed, sent to review): the target then says they are no longer current.
 * An item that only failed transiently (a provider outage) keeps its row: the
 * failure says nothing about the item, and `dlq retry` may still commit it.
 */
export async function withdrawUncommitted(db: Database, table: string, runId: string, commitIndex: number): Promise<number> {
  const name = sql.identifier(table);
  // A freshly filled target has no statistics: the planner then expects a few
  // rows and picks nested-loop anti joins, quadratic in the run's size.
  // Hash joins are right at any size, so nested loops are off here.
  const rows = await db.transaction(async (tx) => {
    await tx.rows(sql`SET LOCAL enable_nestloop = off`);
    return tx.rows<{ key: string }>(sql`
    WITH withdrawn AS (
    UPDATE ${name} t SET status = 'withdrawn', withdrawn_at = now(), run_id = ${runId}
    WHERE t.status = 'active'
      AND t.item_id IN (SELECT item_id FROM run_items WHERE run_id = ${runId})
      AND NOT EXISTS (
        SELECT 1 FROM work w WHERE w.run_id = ${runId} AND w.stage_index = ${commitIndex}
          AND w.item_id = t.item_id AND w.status = 'committed')
      AND NOT EXISTS (
        SELECT 1 FROM work w WHERE w.run_id = ${runId} AND w.item_id = t.item_id
          AND w.status = 'failed_terminal' AND w.error_class = 'transient')
    RETURNING t.key, to_jsonb(t) AS row),
    ledger AS (${ledgerOf(table, runId, "withdrawn", "withdraw")})
    SELECT key FROM withdrawn`);
  });
  return rows.length;
}
