import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../src/store/index.ts";

describe("the embedded store's lock", () => {
  it("refuses a second opener while the first holds it, and takes over a lock whose process is gone", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "sluice-lock-")), "pglite");
    // A lock left by a process that no longer exists (kill -9).
    mkdirSync(join(dir, ".."), { recursive: true });
    writeFileSync(`${dir}.lock`, "999999");
    const first = await openDatabase({ dataDir: dir });
    try {
      // Another live process holds it (our parent stands in for one).
      writeFileSync(`${dir}.lock`, String(process.ppid));
      await expect(openDatabase({ dataDir: dir })).rejects.toThrow(/in use by another sluice process/);
    } finally {
      writeFileSync(`${dir}.lock`, String(process.pid));
      await first.close();
    }
  });
});

describe("a new embedded store", () => {
  it("is created (in a child process) on first open, migrated, and opened as it is afterwards", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "sluice-init-")), "pglite");
    expect(existsSync(join(dir, "PG_VERSION"))).toBe(false);
    const first = await openDatabase({ dataDir: dir });
    try {
      expect(existsSync(join(dir, "PG_VERSION"))).toBe(true);
      // Migrated: the store's tables are there.
      expect(await first.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM runs`)).toEqual([{ n: 0 }]);
      await first.rows(sql`CREATE TABLE kept (v text)`);
      await first.rows(sql`INSERT INTO kept VALUES ('still here')`);
    } finally {
      await first.close();
    }
    const again = await openDatabase({ dataDir: dir });
    try {
      expect(await again.rows<{ v: string }>(sql`SELECT v FROM kept`)).toEqual([{ v: "still here" }]);
      // Opened with the small buffer pool: PGlite's memory never shrinks, so the pool is paid in full.
      expect(await again.rows<{ shared_buffers: string }>(sql`SHOW shared_buffers`)).toEqual([{ shared_buffers: "16MB" }]);
    } finally {
      await again.close();
    }
  }, 120_000);
});
