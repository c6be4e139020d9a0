import { and, eq, sql, type SQL } from "drizzle-orm";
import { SluiceError } from "../core/errors.ts";
import type { TargetColumn } from "../core/target.ts";
import type { Database } from "./database.ts";
import { sourceCursors, sourceFiles } from "./schema.ts";
import { anyText } from "./sql.ts";
import { targetColumnsOf, targetName } from "./targets.ts";

/**
 * Table, query and glob sources: reading a table or query past a cursor,
 * the cursor each pipeline has reached (`source_cursors`), the files of a
 * glob it has read (`source_files`), and loading seed rows into a source
 * table (`loadSourceTable`, which `sluice table load` calls).
 */

/** Where a table or query source reads from, and the column it advances on. */
export interface RowSourceSpec {
  table?: string;
  query?: string;
  cursor: string;
}

export interface SourceRow {
  row: Record<string, unknown>;
  /** The cursor column's value as text (exact: a timestamp keeps its microseconds). */
  cursor: string;
  /** md5 of the whole row's JSON, cursor column included: how a row at the cursor's value is known to have been read. */
  hash: string;
}

/**
 * Where a pipeline has read a source up to: the cursor's value, and the rows
 * at exactly that value it has read (`SourceRow.hash`). Several rows may share
 * a value (a `date` cursor, a batch number, a timestamp of one transaction),
 * and one may arrive after a run read the others: it is past the cursor too.
 */
export interface SourceCursor {
  value: string;
  seen: readonly string[];
}

function fromOf(spec: RowSourceSpec): SQL {
  if (spec.table) return sql`SELECT * FROM ${targetName(spec.table)}`;
  if (spec.query) return sql.raw(spec.query.trim().replace(/;\s*$/, ""));
  throw new SluiceError("a row source needs a table or a query");
}

/** Postgres types a cursor may be compared as: what `pg_typeof` says of a timestamp, date or integer column. */
const CURSOR_TYPE = /^(timestamp (with|without) time zone|date|bigint|integer|smallint|numeric)$/;

/**
 * The cursor column's type, taken from the rows themselves (`pg_typeof`), so a
 * stored cursor is cast back to it and compared as a timestamp or a number,
 * not as text. Undefined when the source has no rows.
 */
async function cursorType(db: Database, spec: RowSourceSpec): Promise<string | undefined> {
  const col = sql.identifier(spec.cursor);
  let rows: { type: string }[];
  try {
    rows = await db.rows<{ type: string }>(sql`SELECT pg_typeof(s.${col})::text AS type FROM (${fromOf(spec)}) AS s LIMIT 1`);
  } catch (err) {
    throw new SluiceError(`cannot read the source ${spec.table ?? "query"}: ${(err as Error).message.split("\n")[0]}`);
  }
  const type = rows[0]?.type;
  if (type !== undefined && !CURSOR_TYPE.test(type)) throw new SluiceError(`source cursor ${spec.cursor} is ${type}: use a timestamp (updated_at) or an increasing integer id`);
  return type;
}

const ROW_HASH = sql`md5(to_jsonb(s)::text)`;

/**
 * The source's rows whose cursor is past `after`'s value, or at it and not
 * read yet, as a FROM item. The two are read apart, so the rows at the value
 * meet those already read in an anti-join (hashed): 100,000 rows of one
 * timestamp against 99,990 read took 0.5 s on Postgres, where one condition
 * joined by OR compared each row with every hash and had not ended after 120 s.
 */
function rowsPast(spec: RowSourceSpec, type: string, after: SourceCursor | null): SQL {
  if (after === null) return sql`(${fromOf(spec)})`;
  const col = sql`s.${sql.identifier(spec.cursor)}`;
  const value = sql`CAST(${after.value} AS ${sql.raw(type)})`;
  const past = sql`SELECT * FROM (${fromOf(spec)}) AS s WHERE ${col} > ${value}`;
  // A cursor saved before rows at its value were recorded: as it was read then.
  if (after.seen.length === 0) return sql`(${past})`;
  return sql`(${past} UNION ALL SELECT * FROM (${fromOf(spec)}) AS s WHERE ${col} = ${value}
    AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(${JSON.stringify(after.seen)}::jsonb) AS seen(h) WHERE seen.h = ${ROW_HASH}))`;
}

/** Rows per page when a table or query source is read: what is held in memory at once. */
export const SOURCE_PAGE_ROWS = 1000;

/**
 * Rows past `after` (all of them when null), in cursor order, handed to
 * `onPage` a page of at most `pageRows` at a time: a server-side cursor
 * (`DECLARE ... CURSOR`, `FETCH`) in one transaction, so every page comes
 * from one snapshot of the source (rows tied on the cursor are neither split
 * nor read twice) and memory holds one page. The cursor column is left out
 * of each row unless it is `keep` (the item key). Returns the rows read.
 */
export async function readRowsPast(
  db: Database,
  spec: RowSourceSpec,
  after: SourceCursor | null,
  onPage: (rows: SourceRow[]) => Promise<void> | void,
  options: { keep?: string; pageRows?: number } = {},
): Promise<number> {
  const pageRows = options.pageRows ?? SOURCE_PAGE_ROWS;
  if (!Number.isInteger(pageRows) || pageRows < 1) throw new SluiceError(`a source page holds at least one row, got ${pageRows}`);
  return db.transaction(async (tx) => {
    const type = await cursorType(tx, spec);
    if (type === undefined) return 0;
    const col = sql.identifier(spec.cursor);
    const row = options.keep === spec.cursor ? sql`to_jsonb(s)` : sql`to_jsonb(s) - ${spec.cursor}::text`;
    await tx.rows(sql`DECLARE sluice_source_rows NO SCROLL CURSOR FOR
      SELECT ${row} AS row, s.${col}::text AS cursor, ${ROW_HASH} AS hash FROM ${rowsPast(spec, type, after)} AS s
      ORDER BY s.${col}`);
    let read = 0;
    for (;;) {
      const page = await tx.rows<{ row: Record<string, unknown>; cursor: string | null; hash: string }>(sql`FETCH FORWARD ${sql.raw(String(pageRows))} FROM sluice_source_rows`);
      const missing = page.find((r) => r.cursor === null);
      if (missing) throw new SluiceError(`source cursor ${spec.cursor} is null in a row (${JSON.stringify(missing.row).slice(0, 120)}): every row needs one`);
      if (page.length > 0) await onPage(page as SourceRow[]);
      read += page.length;
      if (page.length < pageRows) break;
    }
    await tx.rows(sql`CLOSE sluice_source_rows`);
    return read;
  });
}

/** Whether any row lies past `after`: what the `onNewRows` sensor polls, reading one row at most. */
export async function hasRowsPast(db: Database, spec: RowSourceSpec, after: SourceCursor | null): Promise<boolean> {
  const type = await cursorType(db, spec);
  if (type === undefined) return false;
  const rows = await db.rows(sql`SELECT 1 FROM ${rowsPast(spec, type, after)} AS s LIMIT 1`);
  return rows.length > 0;
}

/** The cursor a pipeline has reached on a source; null before its first finished run. */
export async function sourceCursor(db: Database, pipeline: string, source: string): Promise<SourceCursor | null> {
  const [row] = await db.db
    .select({ value: sourceCursors.cursor, seen: sourceCursors.seen })
    .from(sourceCursors)
    .where(and(eq(sourceCursors.pipeline, pipeline), eq(sourceCursors.source, source)));
  return row ?? null;
}

/** Move a pipeline's cursor on a source to what its run read up to. */
export async function saveSourceCursor(db: Database, pipeline: string, source: string, cursor: SourceCursor, runId: string, rowsRead: number): Promise<void> {
  const values = { cursor: cursor.value, seen: [...cursor.seen], runId, rowsRead };
  await db.db
    .insert(sourceCursors)
    .values({ pipeline, source, ...values })
    .onConflictDoUpdate({ target: [sourceCursors.pipeline, sourceCursors.source], set: { ...values, updatedAt: sql`now()` } });
}

/**
 * The statuses of the pipeline's runs over each of these input files (a
 * sensor's snapshots), by path; a path no run was recorded over is absent.
 */
export async function snapshotRuns(db: Database, pipeline: string, paths: readonly string[]): Promise<Map<string, string[]>> {
  if (paths.length === 0) return new Map();
  const rows = await db.rows<{ input_path: string; status: string }>(sql`
    SELECT input_path, status FROM runs WHERE pipeline = ${pipeline} AND input_path = ${anyText(paths)}`);
  const out = new Map<string, string[]>();
  for (const r of rows) out.set(r.input_path, [...(out.get(r.input_path) ?? []), r.status]);
  return out;
}

/** Which of these `(path, fingerprint)` pairs the pipeline has read, as `path\0fingerprint` strings. */
export async function filesRead(db: Database, pipeline: string, paths: readonly string[]): Promise<Set<string>> {
  if (paths.length === 0) return new Set();
  const rows = await db.rows<{ path: string; fingerprint: string }>(sql`
    SELECT path, fingerprint FROM source_files WHERE pipeline = ${pipeline} AND path = ${anyText(paths)}`);
  return new Set(rows.map((r) => `${r.path}\0${r.fingerprint}`));
}

/** Record a file of a glob source as read by a finished run. */
export async function recordFileRead(db: Database, pipeline: string, path: string, fingerprint: string, runId: string): Promise<void> {
  await db.db.insert(sourceFiles).values({ pipeline, path, fingerprint, runId }).onConflictDoNothing();
}

/**
 * Create a source table (typed columns, a primary key, and `updated_at`
 * set on insert and on every change, by this load or by any UPDATE: a
 * trigger, `sluice_touch_updated_at`) if absent, and upsert rows into it by
 * key. A row whose columns are unchanged is left alone, its `updated_at`
 * too, so loading the same file again moves no cursor. Returns the rows
 * inserted and updated.
 */
export async function loadSourceTable(db: Database, table: string, key: string, columns: readonly TargetColumn[], rows: readonly Record<string, unknown>[]): Promise<{ inserted: number; updated: number }> {
  const name = targetName(table);
  const seen = new Set<string>();
  for (const [i, r] of rows.entries()) {
    const id = r[key];
    if (id === undefined || id === null || id === "") throw new SluiceError(`row ${i + 1} has no ${key}`);
    if (seen.has(String(id))) throw new SluiceError(`row ${i + 1}: ${key} ${JSON.stringify(id)} appears twice; a table holds one row per key`);
    seen.add(String(id));
  }
  return db.transaction(async (tx) => {
    await tx.rows(sql`SELECT pg_advisory_xact_lock(hashtext(${`sluice:source:${table}`}))`);
    if (table.includes(".")) await tx.rows(sql`CREATE SCHEMA IF NOT EXISTS ${sql.identifier(table.split(".")[0]!)}`);
    const existing = await targetColumnsOf(tx, table);
    if (existing.length === 0) {
      const body = sql.join(columns.map((c) => sql`${sql.identifier(c.name)} ${sql.raw(c.sqlType)}${c.name === key ? sql` PRIMARY KEY` : sql``}`), sql`, `);
      await tx.rows(sql`CREATE TABLE ${name} (${body}, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
      // An UPDATE by hand (or by another tool) moves updated_at too, so a cursor on it sees the change.
      // One function serves every such table; two loads creating tables at once replace it in turn.
      await tx.rows(sql`SELECT pg_advisory_xact_lock(hashtext('sluice:touch_updated_at'))`);
      await tx.rows(sql`CREATE OR REPLACE FUNCTION sluice_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW IS DISTINCT FROM OLD AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN NEW.updated_at := clock_timestamp(); END IF;
          RETURN NEW;
        END $$`);
      await tx.rows(sql`CREATE TRIGGER sluice_touch_updated_at BEFORE UPDATE ON ${name} FOR EACH ROW EXECUTE FUNCTION sluice_touch_updated_at()`);
    } else {
      const have = new Set(existing.map((c) => c.column_name));
      const missing = [...columns.map((c) => c.name), "updated_at"].filter((c) => !have.has(c));
      if (missing.length) throw new SluiceError(`table ${table} exists without column(s) ${missing.join(", ")}: load into a new table, or add them by hand`);
    }
    let inserted = 0;
    let updated = 0;
    const cols = columns.map((c) => sql.identifier(c.name));
    const others = columns.filter((c) => c.name !== key).map((c) => sql.identifier(c.name));
    const CHUNK = 1000;
    for (let at = 0; at < rows.length; at += CHUNK) {
      const payload = JSON.stringify(rows.slice(at, at + CHUNK));
      const changes = others.length
        ? sql`ON CONFLICT (${sql.identifier(key)}) DO UPDATE SET ${sql.join(others.map((c) => sql`${c} = excluded.${c}`), sql`, `)}, updated_at = clock_timestamp()
          WHERE (${sql.join(others.map((c) => sql`t.${c}`), sql`, `)}) IS DISTINCT FROM (${sql.join(others.map((c) => sql`excluded.${c}`), sql`, `)})`
        : sql`ON CONFLICT DO NOTHING`;
      const result = await tx.rows<{ inserted: boolean }>(sql`
        INSERT INTO ${name} AS t (${sql.join(cols, sql`, `)})
        SELECT ${sql.join(cols.map((c) => sql`(v).${c}`), sql`, `)}
        FROM jsonb_array_elements(${payload}::jsonb) AS x(data)
        CROSS JOIN LATERAL (SELECT jsonb_populate_record(NULL::${name}, x.data) AS v) p
        ${changes}
        RETURNING (xmax = 0) AS inserted`);
      for (const r of result) r.inserted ? inserted++ : updated++;
    }
    return { inserted, updated };
  });
}
