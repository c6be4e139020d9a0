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
