import { sql } from "drizzle-orm";
import { expect, it } from "vitest";
import { memoryDatabase } from "./databases.ts";

/**
 * `memoryDatabase()` keeps a dropped store for the next call when only rows
 * changed: whatever a test did to the one before, the next is as new.
 */

const rows = (t: { db: { rows: (q: ReturnType<typeof sql>) => Promise<unknown[]> } }, q: ReturnType<typeof sql>) => t.db.rows(q);

it("hands out a store as new after a test wrote rows, moved a sequence and changed a setting", async () => {
  const a = await memoryDatabase();
  await rows(a, sql`INSERT INTO source_cursors (pipeline, source, cursor, run_id, rows_read) VALUES ('p', 't', '1', 'r', 1)`);
  for (let i = 0; i < 3; i++) await rows(a, sql`INSERT INTO attempts (run_id, stage_id, item_id, attempt) VALUES ('r', 's', ${`i${i}`}, 1)`);
  await rows(a, sql`SET TIME ZONE 'Asia/Kolkata'`);
  const zone = await rows(a, sql`SHOW TimeZone`);
  const started = await rows(a, sql`SELECT extract(epoch FROM pg_postmaster_start_time())::text AS at`);
  await a.drop();

  const b = await memoryDatabase();
  try {
    // The same database, emptied, not a new copy (which costs a second or more of CPU).
    expect(await rows(b, sql`SELECT extract(epoch FROM pg_postmaster_start_time())::text AS at`)).toEqual(started);
    expect(await rows(b, sql`SELECT count(*)::int AS n FROM source_cursors`)).toEqual([{ n: 0 }]);
    expect(await rows(b, sql`SELECT count(*)::int AS n FROM attempts`)).toEqual([{ n: 0 }]);
    await rows(b, sql`INSERT INTO attempts (run_id, stage_id, item_id, attempt) VALUES ('r', 's', 'i', 1)`);
    // Its sequences start again: the first row gets the first id.
    expect(await rows(b, sql`SELECT id::int AS id FROM attempts`)).toEqual([{ id: 1 }]);
    expect(await rows(b, sql`SHOW TimeZone`)).not.toEqual(zone);
  } finally {
    await b.drop();
  }
}, 120_000);

it("hands out no store a test changed the schema of, nor one it closed", async () => {
  const a = await memoryDatabase();
  await rows(a, sql`CREATE TABLE left_behind (id int)`);
  await rows(a, sql`ALTER TABLE runs ADD COLUMN extra text`);
  const started = await rows(a, sql`SELECT extract(epoch FROM pg_postmaster_start_time())::text AS at`);
  await a.drop();
  const b = await memoryDatabase();
  try {
    expect(await rows(b, sql`SELECT extract(epoch FROM pg_postmaster_start_time())::text AS at`)).not.toEqual(started);
    expect(await rows(b, sql`SELECT to_regclass('left_behind') AS t`)).toEqual([{ t: null }]);
    expect(await rows(b, sql`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'runs' AND column_name = 'extra'`)).toEqual([
      { n: 0 },
    ]);
  } finally {
    await b.drop();
  }

  // Closed by the code under test, then dropped: closed once, and not handed out.
  const c = await memoryDatabase();
  await c.db.close();
  await c.drop();
  const d = await memoryDatabase();
  try {
    expect(await rows(d, sql`SELECT 1 AS one`)).toEqual([{ one: 1 }]);
  } finally {
    await d.drop();
  }
}, 120_000);
