import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { openDatabase, type Database } from "../store/index.ts";

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
export function testDrivers(env: NodeJS.ProcessEnv = process.env): { name: "pglite" | "postgres"; skip?: string; open: () => Promise<TestDatabase> }[] {
  return [
    { name: "pglite", open: () => memoryDatabase() },
    {
      name: "postgres",
      skip: env.DATABASE_URL ? undefined : "DATABASE_URL is not set (CI sets it; locally point it at a Postgres server)",
      open: () => freshPostgres(env.DATABASE_URL!),
    },
  ];
}

export async function memoryDatabase(): Promise<TestDatabase> {
  const db = await openDatabase({ dataDir: ":memory:" });
  return { db, drop: () => db.close() };
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
