import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { openDatabase, type Database } from "../store/index.ts";
import { emptyStore, schemaSignature } from "../store/reuse.ts";

export interface TestDatabase {
  db: Database;
  /** Postgres URL of the database, when it is one (to hand to a child process). */
  url?: string;
  drop(): Promise<void>;
}

/**
 * The drivers a store test runs on: in-memory PGlite always, and a fresh
 * Postgres database when `DATABASE_URL` points at a server (CI sets it).
 * Each call makes a new, empty, migrated database, so suites never share state.
 *
 * @example
 * for (const driver of testDrivers()) describe(driver.name, () => { ... driver.open() ... });
 */
export function testDrivers(env: NodeJS.ProcessEnv = process.env): {
  name: "pglite" | "postgres";
  skip?: string;
  open: () => Promise<TestDatabase>;
}[] {
  return [
    { name: "pglite", open: () => memoryDatabase() },
    {
      name: "postgres",
      skip: env.DATABASE_URL ? undefined : "DATABASE_URL is not set (CI sets it; locally point it at a Postgres server)",
      open: () => freshPostgres(env.DATABASE_URL!),
    },
  ];
}

/**
 * A new, empty, migrated in-memory store. Opening one (a copy of the first
 * this process migrated, in a thread of its own) costs about 1.4 s of CPU;
 * so `drop()` empties a store and keeps it for the next call instead of
 * closing it, when nothing but rows was changed: its tables are truncated, its
 * sequences restarted and its session reset, and it is kept only if its
 * catalog is the template's, so a store handed out is one no test can tell
 * from a new copy. A store its test closed, or one with a table, column,
 * index, function, type or temporary table more or less, is closed instead.
 * So a test's writes must have ended when it drops its store: one that
 * arrives later would land in the next test's.
 */
export async function memoryDatabase(): Promise<TestDatabase> {
  const db = idle.pop() ?? (await openDatabase({ dataDir: ":memory:" }));
  template ??= schemaSignature(db);
  let closed = false;
  const handed: Database = {
    ...db,
    async close() {
      closed = true;
      await db.close();
    },
  };
  return {
    db: handed,
    async drop() {
      if (closed) return;
      closed = true;
      if (idle.length < IDLE_MAX && (await emptied(db))) idle.push(db);
      else await db.close();
    },
  };
}

/** Emptied stores kept for the next `memoryDatabase()`: one, as tests open them one after another. */
const idle: Database[] = [];
const IDLE_MAX = 1;
/** The catalog of a new in-memory store, taken from the first this process opened. */
let template: Promise<string> | undefined;

/** Empties a store its test is done with; whether it can be handed out again as new. */
async function emptied(db: Database): Promise<boolean> {
  try {
    await emptyStore(db);
    return (await schemaSignature(db)) === (await template);
  } catch {
    return false;
  }
}

/** Create a throwaway database on the server behind `baseUrl`, migrated and empty. */
export async function freshPostgres(baseUrl: string): Promise<TestDatabase> {
  const name = `sluice_t_${randomBytes(5).toString("hex")}`;
  const admin = postgres(baseUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  const db = await openDatabase({ url: url.toString() });
  return {
    db,
    url: url.toString(),
    async drop() {
      await db.close();
      const cleanup = postgres(baseUrl, { max: 1, onnotice: () => {} });
      await cleanup.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
      await cleanup.end();
    },
  };
}
