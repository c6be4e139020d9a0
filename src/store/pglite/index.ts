import { isProcessAlive } from "../../core/pid.ts";
import { execFile } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmdirSync, rmSync, writeSync } from "node:fs";
import { promisify } from "node:util";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";
import { SluiceError } from "../../core/errors.ts";
import { PGliteThread } from "./client.ts";
import { MIGRATIONS_DIR, wrap, type Database, type Drizzle } from "../database.ts";
import * as schema from "../schema.ts";

/**
 * Embedded Postgres (PGlite) in `dataDir`, or in memory when `dataDir` is
 * undefined, running in a thread of its own (`client.ts`). One process at a time may open a data directory: a lock file
 * says who has it, so a second `sluice` gets a clear message instead of a
 * corrupted database.
 *
 * @example
 * const db = await connect({ dataDir: ".sluice/pglite" });
 */
export async function connect(options: { dataDir?: string } = {}): Promise<Database> {
  const { dataDir } = options;
  let release = () => {};
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true });
    release = takeLock(join(dataDir, "..", `${dataDir.split("/").pop()}.lock`));
  }
  // Postgres' default 128 MB of shared buffers doubles what the operating
  // system (on disk) or PGlite's own file system (in memory) already caches.
  // Every page of PGlite's WebAssembly memory once touched stays resident
  // (that memory never shrinks), so the buffer pool is paid in full: 16 MB
  // costs the demo no CPU time against 32 MB (7.9 s against 8.0 s) and
  // about 30 MB less peak memory (431 against 462 MB); 128 MB cost about 100 MB more.
  const startParams = [...PGlite.defaultStartParams, "-c", "shared_buffers=16MB"];
  if (dataDir && !existsSync(join(dataDir, "PG_VERSION"))) {
    try {
      await initDataDir(dataDir, startParams);
    } catch (err) {
      release();
      throw err;
    }
  }
  let client: PGliteThread;
  try {
    client = await PGliteThread.open({ dataDir, startParams });
  } catch (err) {
    release();
    throw err;
  }
  const db = drizzle(client as never, { schema }) as unknown as Drizzle;
  try {
    await migrate(db as never, { migrationsFolder: MIGRATIONS_DIR });
  } catch (err) {
    release();
    await client.close();
    throw err;
  }
  return wrap("pglite", db, dataDir ? `embedded PGlite at ${dataDir}` : "in-memory PGlite", async () => {
    await client.close();
    release();
  });
}

/**
 * Create a new data directory in a short-lived child process. Creating one
 * (initdb) leaves about 500 MB of WebAssembly code and memory behind in the
 * process that did it, which garbage collection does not give back: a fresh
 * store opened in this process peaked at 806 MB, one created by a child and
 * opened here at 277 MB. A data directory is created once; every later open
 * reads it as it is.
 */
async function initDataDir(dataDir: string, startParams: string[]): Promise<void> {
  // Created beside it and renamed into place when complete, so a process
  // killed meanwhile leaves no half-made store for the next one to open.
  const building = `${dataDir}.init-${process.pid}`;
  rmSync(building, { recursive: true, force: true });
  // Code, not a file: the same from the sources and from a build.
  const code = `const { PGlite } = await import(process.argv[1]);
const pg = new PGlite(process.argv[2], { startParams: JSON.parse(process.argv[3]) });
await pg.waitReady;
await pg.close();`;
  try {
    await promisify(execFile)(process.execPath, ["--input-type=module", "-e", code, import.meta.resolve("@electric-sql/pglite"), building, JSON.stringify(startParams)], { maxBuffer: 1 << 22 });
    // Replaces the directory made to take the lock beside; only if empty, so nothing else is ever removed.
    rmdirSync(dataDir);
    renameSync(building, dataDir);
  } catch (err) {
    rmSync(building, { recursive: true, force: true });
    throw new SluiceError(`could not create the embedded database at ${dataDir}: ${initFailure(err)}`, { cause: err });
  }
}

/**
 * Why the child creating a data directory failed, in one line: PGlite's file
 * system errors carry a WASI errno only (51: the disk is full), and Node ends
 * stderr with its version, so the last line alone says nothing.
 */
export function initFailure(err: unknown): string {
  const stderr = String((err as { stderr?: unknown }).stderr ?? "");
  const errno = /ErrnoError[^\n]*errno: (\d+)/.exec(stderr)?.[1];
  if (errno === "51") return "no space left on the device (free some disk space and run again)";
  if (errno !== undefined) return `file system error ${errno} (WASI errno) while writing it`;
  const lines = stderr.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("Node.js v") && !l.startsWith("at ") && l !== "^");
  return lines.find((l) => /error/i.test(l)) ?? lines.at(-1) ?? (err instanceof Error ? err.message : String(err));
}

/**
 * Take the data directory's lock file with an exclusive create, so two
 * processes starting together cannot both get it. A lock left by a process
 * that is gone (kill -9) is taken over.
 */
function takeLock(path: string): () => void {
  for (let tries = 0; ; tries++) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || tries > 2) throw err;
    }
    const holder = Number(readFileSync(path, "utf8"));
    if (holder && holder !== process.pid && isProcessAlive(holder)) {
      throw new SluiceError(
        `the embedded database is in use by another sluice process (pid ${holder}); wait for it, or set DATABASE_URL to a Postgres server so several processes can share a run`,
      );
    }
    // Stale (its process is gone) or unreadable: remove it and try again.
    rmSync(path, { force: true });
  }
}
