import { sql } from "drizzle-orm";
import type { Database } from "./database.ts";

/**
 * What lets `memoryDatabase()` (`sluice/testing`) hand one in-memory store to
 * test after test: empty it of rows, and tell whether anything but rows
 * changed.
 */

/**
 * A store's schema objects, its migrations and its database settings, as
 * text: what a test could change besides rows. Two stores with the same
 * signature have the same tables, columns, defaults, constraints, indexes,
 * triggers, functions, types, views and extensions.
 */
export async function schemaSignature(db: Database): Promise<string> {
  const [row] = await db.rows<{ sig: string }>(
    sql.raw(`
    WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema')
    SELECT string_agg(x, E'\\n' ORDER BY x) AS sig FROM (
      SELECT format('ns %s', nspname) AS x FROM ns
      UNION ALL SELECT format('rel %s %s %s', c.oid::regclass, c.relkind, c.relpersistence) FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
      UNION ALL SELECT format('temp %s', count(*)) FROM pg_class WHERE relpersistence = 't'
      UNION ALL SELECT format('col %s %s %s %s %s %s %s', a.attrelid::regclass, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attisdropped, pg_get_expr(d.adbin, d.adrelid))
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attnum > 0
      UNION ALL SELECT format('con %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(c.oid)) FROM pg_constraint c JOIN ns ON ns.oid = c.connamespace
      UNION ALL SELECT format('idx %s', pg_get_indexdef(i.indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN ns ON ns.oid = c.relnamespace
      UNION ALL SELECT format('trg %s %s', tgrelid::regclass, tgname) FROM pg_trigger WHERE NOT tgisinternal
      UNION ALL SELECT format('fn %s %s', p.oid::regprocedure, md5(p.prosrc)) FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
      UNION ALL SELECT format('type %s', t.oid::regtype) FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
      UNION ALL SELECT format('view %s %s', c.oid::regclass, md5(pg_get_viewdef(c.oid))) FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')
      UNION ALL SELECT format('ext %s %s', extname, extversion) FROM pg_extension
      UNION ALL SELECT format('setting %s', array_to_string(setconfig, ',')) FROM pg_db_role_setting
      UNION ALL SELECT format('policy %s', polname) FROM pg_policy
      UNION ALL SELECT format('migrations %s %s', count(*), max(hash)) FROM drizzle.__drizzle_migrations
    ) s`),
  );
  return row!.sig;
}

/**
 * Truncates every table but the migrations' record, restarts every sequence,
 * and resets the session: its settings and any advisory lock it holds.
 */
export async function emptyStore(db: Database): Promise<void> {
  await db.rows(
    sql.raw(`
      DO $$ DECLARE tables text; BEGIN
        SELECT string_agg(c.oid::regclass::text, ', ') INTO tables FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname NOT IN ('information_schema', 'drizzle');
        IF tables IS NOT NULL THEN EXECUTE 'TRUNCATE ' || tables || ' RESTART IDENTITY CASCADE'; END IF;
        PERFORM setval(format('%I.%I', schemaname, sequencename), start_value, false) FROM pg_sequences WHERE schemaname <> 'drizzle';
      END $$`),
  );
  await db.rows(sql.raw("RESET ALL"));
  await db.rows(sql.raw("SELECT pg_advisory_unlock_all()"));
}
