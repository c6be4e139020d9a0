import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterEach, describe, expect, test } from "vitest";
import { openDatabase } from "../index.ts";

/**
 * A new on-disk store is a copy of a template data directory made once (in
 * SLUICE_CACHE_DIR): initdb, seconds and about 790 MB in its child process,
 * is paid by the first store only.
 */
describe("a new embedded store", () => {
  const previous = process.env.SLUICE_CACHE_DIR;
  afterEach(() => {
    if (previous === undefined) delete process.env.SLUICE_CACHE_DIR;
    else process.env.SLUICE_CACHE_DIR = previous;
  });

  test("is copied from a template made by the first, and works as a store made in place", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-template-"));
    process.env.SLUICE_CACHE_DIR = join(dir, "cache");
    const first = await openDatabase({ dataDir: join(dir, "a", "pglite") });
    await first.close();
    const [template] = readdirSync(join(dir, "cache"));
    expect(template).toMatch(/^pglite-[0-9a-f]{16}$/);
    // Marked: a store made from now on is a copy of it, not a new initdb.
    writeFileSync(join(dir, "cache", template!, "made-once"), "");
    const second = await openDatabase({ dataDir: join(dir, "b", "pglite") });
    try {
      expect(existsSync(join(dir, "b", "pglite", "made-once"))).toBe(true);
      expect(await second.rows(sql`SELECT count(*)::int AS n FROM runs`)).toEqual([{ n: 0 }]);
    } finally {
      await second.close();
    }
    expect(readdirSync(join(dir, "cache"))).toEqual([template]);
  }, 120_000);

  test("is made in place where no template can be kept", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-template-"));
    // A file where the cache folder should be: nothing can be written under it.
    writeFileSync(join(dir, "not-a-folder"), "");
    process.env.SLUICE_CACHE_DIR = join(dir, "not-a-folder");
    const db = await openDatabase({ dataDir: join(dir, "a", "pglite") });
    try {
      expect(await db.rows(sql`SELECT count(*)::int AS n FROM runs`)).toEqual([{ n: 0 }]);
    } finally {
      await db.close();
    }
  }, 120_000);
});

describe("a new in-memory store", () => {
  test("is a copy of the first one this process migrated, empty whatever the others hold, and with the store's settings", async () => {
    const first = await openDatabase({ dataDir: ":memory:" });
    const second = await openDatabase({ dataDir: ":memory:" });
    try {
      await first.rows(sql`INSERT INTO source_cursors (pipeline, source, cursor, run_id, rows_read) VALUES ('p', 't', '1', 'r', 1)`);
      const started = Date.now();
      const third = await openDatabase({ dataDir: ":memory:" });
      const took = Date.now() - started;
      try {
        for (const db of [second, third]) expect(await db.rows(sql`SELECT count(*)::int AS n FROM source_cursors`)).toEqual([{ n: 0 }]);
        expect(await third.rows(sql`SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`)).toEqual(await first.rows(sql`SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`));
        expect(await third.rows(sql`SHOW shared_buffers`)).toEqual([{ shared_buffers: "16MB" }]);
        // Not a timing assertion: the copy is logged for whoever reads the output.
        console.log(`an in-memory store after the first opened in ${took} ms`);
      } finally {
        await third.close();
      }
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  }, 120_000);
});
