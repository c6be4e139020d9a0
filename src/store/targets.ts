import { sql, type SQL } from "drizzle-orm";
import { SluiceError } from "../core/errors.ts";
import type { TargetColumn } from "../core/target.ts";
import type { Database } from "./database.ts";
import { textArray } from "./sql.ts";

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

/** A target's name as SQL: `table`, or `schema.table`. */
export function targetName(table: string): SQL {
  const [first, second] = table.split(".");
  return second === undefined ? sql`${sql.identifier(first!)}` : sql`${sql.identifier(first!)}.${sql.identifier(second)}`;
}

function schemaAndTable(table: string): { schema: SQL; table: string } {
  const [first, second] = table.split(".");
  return second === undefined ? { schema: sql`current_schema()`, table: first! } : { schema: sql`${first}`, table: second };
}

/** A target's columns as Postgres reports them (name and type), in order; none when it does not exist. */
export async function targetColumnsOf(db: Database, table: string): Promise<{ column_name: string; data_type: string }[]> {
  const at = schemaAndTable(table);
  return db.rows(sql`
    SELECT column_name, CASE WHEN data_type = 'USER-DEFINED' THEN udt_name WHEN data_type = 'timestamp with time zone' THEN 'timestamptz' ELSE data_type END AS data_type
    FROM information_schema.columns WHERE table_schema = ${at.schema} AND table_name = ${at.table} ORDER BY ordinal_position`);
}

/**
 * Create a target (in its schema, created too) if it does not exist: the
 * bookkeeping columns, then `data jsonb`, or the declared typed columns. An
 * existing typed target gains the columns added to its declaration since; a
 * column whose type changed, or a target whose layout changed (typed against
 * `data jsonb`), is refused with what to do, never altered in place.
 */
export async function ensureTarget(db: Database, table: string, columns?: readonly TargetColumn[]): Promise<void> {
  const name = targetName(table);
  // Two processes sharing a run reach this together; CREATE TABLE IF NOT EXISTS
  // is not safe against a concurrent create (both pass the check, one fails on
  // pg_type's unique index), so creates of one table are serialised.
  await db.transaction(async (tx) => {
    await tx.rows(sql`SELECT pg_advisory_xact_lock(hashtext(${`sluice:target:${table}`}))`);
    if (table.includes(".")) await tx.rows(sql`CREATE SCHEMA IF NOT EXISTS ${sql.identifier(table.split(".")[0]!)}`);
    const existing = await targetColumnsOf(tx, table);
    if (existing.length === 0) {
      const body = columns?.length
        ? sql.join(columns.map((c) => sql`${sql.identifier(c.name)} ${sql.raw(c.sqlType)}`), sql`,\n    `)
        : sql`data jsonb NOT NULL`;
      await tx.rows(sql`CREATE TABLE ${name} (
    key text PRIMARY KEY,
    item_id text NOT NULL,
    ${body},
    status text NOT NULL DEFAULT 'active',
    run_id text NOT NULL,
    stage_version text NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    withdrawn_at timestamptz
  )`);
      return;
    }
    const have = new Map(existing.map((c) => [c.column_name, c.data_type]));
    if (!columns?.length) {
      if (!have.has("data")) throw new SluiceError(`target ${table} has typed columns, but this commit stage declares none (target.columns): declare them, or commit to another table`);
      return;
    }
    if (have.has("data")) throw new SluiceError(`target ${table} keeps rows as data jsonb, but this commit stage declares typed columns: commit to a new table, or rename ${table} first`);
    for (const c of columns) {
      const type = have.get(c.name);
      if (type === undefined) await tx.rows(sql`ALTER TABLE ${name} ADD COLUMN ${sql.identifier(c.name)} ${sql.raw(c.sqlType)}`);
      else if (type !== c.sqlType) throw new SluiceError(`target ${table}: column ${c.name} is ${type}, the commit stage declares ${c.sqlType}; change it by hand (ALTER TABLE ... ALTER COLUMN ... TYPE), or commit to a new table`);
    }
  });
}

/**
 * Idempotent upsert, as a statement to embed (it returns the keys it changed
 * and their rows after): a row whose data and status are unchanged is left
 * alone, so re-running a commit (after a crash or a rerun) writes nothing
 * twice. `only` is a condition on `x.item_id`: which of the rows to write.
 * With typed `columns`, each row's fields go to their columns (cast by
 * `jsonb_populate_record`). Embed `ledgerOf` beside it to record what changed.
 */
export function upsertTarget(table: string, runId: string, version: string, rows: readonly TargetRow[], only: SQL, columns?: readonly TargetColumn[]): SQL {
  const name = targetName(table);
  const payload = JSON.stringify(rows.map((r) => ({ key: r.key, item_id: r.itemId, data: r.data })));
  if (!columns?.length) {
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
  const cols = columns.map((c) => sql.identifier(c.name));
  const list = sql.join(cols, sql`, `);
  return sql`
    INSERT INTO ${name} AS t (key, item_id, ${list}, status, run_id, stage_version)
    SELECT x.key, x.item_id, ${sql.join(cols.map((c) => sql`(v).${c}`), sql`, `)}, 'active', ${runId}, ${version}
    FROM jsonb_to_recordset(${payload}::jsonb) AS x(key text, item_id text, data jsonb)
    CROSS JOIN LATERAL (SELECT jsonb_populate_record(NULL::${name}, x.data) AS v) p
    WHERE ${only}
    ON CONFLICT (key) DO UPDATE SET
      ${sql.join(cols.map((c) => sql`${c} = excluded.${c}`), sql`, `)}, item_id = excluded.item_id, status = 'active', run_id = excluded.run_id,
      stage_version = excluded.stage_version, committed_at = now(), withdrawn_at = NULL
    WHERE (${sql.join(cols.map((c) => sql`t.${c}`), sql`, `)}) IS DISTINCT FROM (${sql.join(cols.map((c) => sql`excluded.${c}`), sql`, `)}) OR t.status <> 'active'
    RETURNING t.key, to_jsonb(t) AS row`;
}

/**
 * Upsert rows into a target with their ledger rows, in one statement of its
 * own: for a target in another database than the store (`target.url`).
 */
export async function writeTarget(db: Database, table: string, runId: string, version: string, rows: readonly TargetRow[], columns?: readonly TargetColumn[]): Promise<number> {
  const [row] = await db.rows<{ n: number }>(sql`
    WITH changed AS (${upsertTarget(table, runId, version, rows, sql`TRUE`, columns)}),
    ledger AS (${ledgerOf(table, runId, "changed")})
    SELECT count(*)::int AS n FROM changed`);
  return row!.n;
}

/**
 * The ledger rows of a write to a target, as a statement to embed beside it:
 * `written` names the CTE that returned `key, row` (the rows after). Read in
 * the same statement, the target still holds the rows before.
 */
export function ledgerOf(table: string, runId: string, written: string, op?: string): SQL {
  const name = targetName(table);
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
export async function withdrawUncommitted(db: Database, table: string, runId: string, commitIndex: number, targetDb: Database = db): Promise<number> {
  const name = targetName(table);
  if (targetDb !== db) return withdrawElsewhere(db, targetDb, table, runId, commitIndex);
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

/**
 * `withdrawUncommitted` for a target in another database: the items to
 * withdraw are worked out in the store, then withdrawn there, in groups,
 * each with its ledger rows.
 */
async function withdrawElsewhere(store: Database, targetDb: Database, table: string, runId: string, commitIndex: number): Promise<number> {
  const name = targetName(table);
  const items = await store.rows<{ item_id: string }>(sql`
    SELECT r.item_id FROM run_items r
    WHERE r.run_id = ${runId}
      AND NOT EXISTS (
        SELECT 1 FROM work w WHERE w.run_id = ${runId} AND w.stage_index = ${commitIndex}
          AND w.item_id = r.item_id AND w.status = 'committed')
      AND NOT EXISTS (
        SELECT 1 FROM work w WHERE w.run_id = ${runId} AND w.item_id = r.item_id
          AND w.status = 'failed_terminal' AND w.error_class = 'transient')`);
  let withdrawn = 0;
  for (let i = 0; i < items.length; i += 5_000) {
    const ids = items.slice(i, i + 5_000).map((r) => r.item_id);
    const rows = await targetDb.rows<{ key: string }>(sql`
    WITH withdrawn AS (
    UPDATE ${name} t SET status = 'withdrawn', withdrawn_at = now(), run_id = ${runId}
    WHERE t.status = 'active' AND t.item_id = ANY(${textArray(ids)}::text[])
    RETURNING t.key, to_jsonb(t) AS row),
    ledger AS (${ledgerOf(table, runId, "withdrawn", "withdraw")})
    SELECT key FROM withdrawn`);
    withdrawn += rows.length;
  }
  return withdrawn;
}
