import { isProcessAlive } from "../../core/pid.ts";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmdirSync, rmSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { promisify } from "node:util";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";
import { SluiceError } from "../../core/errors.ts";
import { PGliteThread } from "./client.ts";
import { MIGRATIONS_DIR, wrap, type Database, type Drizzle } from "../database.ts";
import * as schema from "../schema.ts";

/** A new, migrated in-memory database as a tarball (40 MB), made by the first one this process opens. */
let memoryTemplate: Promise<Uint8Array> | undefined;

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
  // In memory, a copy of the first new database this process migrated: initdb and the
  // migrations took 3.9 s a database here, a copy takes 1.1-1.4 s (the thread's start included).
  const template = dataDir ? undefined : await memoryTemplate?.catch(() => undefined);
  let client: PGliteThread;
  try {
    client = await PGliteThread.open({ dataDir, startParams, load: template });
  } catch (err) {
    release();
    throw err;
  }
  const db = drizzle(client as never, { schema }) as unknown as Drizzle;
  try {
    await migrate(db as never, { migrationsFolder: MIGRATIONS_DIR });
    // Awaited: no statement of the caller's may land in the copy.
    if (!dataDir && !memoryTemplate) await (memoryTemplate = client.dump());
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
 * Create a new data directory: a copy of a template made once per machine,
 * PGlite version and start parameters (`templateDir`), or, where no template
 * can be kept, made here. Making one (initdb) takes seconds and, in the
 * short-lived child process that does it, about 790 MB (WebAssembly code
 * and memory that garbage collection does not give back; in this process, a
 * fresh store peaked at 806 MB, one made by a child and opened here at
 * 277 MB). A copy takes a fraction of a second and no such memory: the first
 * store on a machine pays for the template, every later one copies it.
 */
async function initDataDir(dataDir: string, startParams: string[]): Promise<void> {
  const template = templateDir(startParams);
  if (template) {
    try {
      if (!existsSync(join(template, "PG_VERSION"))) await createDataDir(template, startParams);
      // Copied beside it and renamed into place when complete, so a process
      // killed meanwhile leaves no half-made store for the next one to open.
      const building = `${dataDir}.init-${process.pid}`;
      rmSync(building, { recursive: true, force: true });
      try {
        cpSync(template, building, { recursive: true });
        rmdirSync(dataDir);
        renameSync(building, dataDir);
        return;
      } catch (err) {
        rmSync(building, { recursive: true, force: true });
        throw err;
      }
    } catch {
      // No template to be had here (a read-only cache, a full disk there): made in place, as without one.
    }
  }
  await createDataDir(dataDir, startParams);
}

/**
 * Where the template data directory is kept: `SLUICE_CACHE_DIR`, else the
 * user's cache folder (`$XDG_CACHE_HOME`, or `~/.cache`), under a name of the
 * PGlite version and the start parameters, so a PGlite upgrade or another
 * setting makes a template of its own, and installs of one version share it.
 */
function templateDir(startParams: string[]): string | undefined {
  try {
    // The package's version, not where it was installed or when: every install of a version shares one template.
    let dir = dirname(fileURLToPath(import.meta.resolve("@electric-sql/pglite")));
    while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
    const { name, version } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
    if (name !== "@electric-sql/pglite" || !version) return undefined;
    const key = createHash("sha256").update(JSON.stringify([version, startParams])).digest("hex").slice(0, 16);
    const root = process.env.SLUICE_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "sluice");
    return join(root, `pglite-${key}`);
  } catch {
    return undefined;
  }
}

/** Make a data directory at `target` (absent, or an empty folder) in a short-lived child process. */
async function createDataDir(target: string, startParams: string[]): Promise<void> {
  // Made beside it and renamed into place when complete, so a process
  // killed meanwhile leaves no half-made store for the next one to open.
  const building = `${target}.init-${process.pid}`;
  rmSync(building, { recursive: true, force: true });
  mkdirSync(dirname(target), { recursive: true });
  // Code, not a file: the same from the sources and from a build.
  const code = `const { PGlite } = await import(process.argv[1]);
const pg = new PGlite(process.argv[2], { startParams: JSON.parse(process.argv[3]) });
await pg.waitReady;
await pg.close();`;
  try {
    await promisify(execFile)(process.execPath, ["--input-type=module", "-e", code, import.meta.resolve("@electric-sql/pglite"), building, JSON.stringify(startParams)], { maxBuffer: 1 << 22 });
    // Replaces the directory made to take the lock beside; only if empty, so nothing else is ever removed.
    if (existsSync(target)) rmdirSync(target);
    renameSync(building, target);
  } catch (err) {
    rmSync(building, { recursive: true, force: true });
    // Another process made the same template meanwhile: it is there to copy.
    if (existsSync(join(target, "PG_VERSION"))) return;
    throw new SluiceError(`could not create the embedded database at ${target}: ${initFailure(err)}`, { cause: err });
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
