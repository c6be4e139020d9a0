import postgres, { type Sql } from "postgres";
import type { SQL } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import { MIGRATIONS_DIR, wrap, type Database, type Drizzle, type Execute } from "../database.ts";
import * as schema from "../schema.ts";

/** Any fixed number: the advisory lock that serialises migrations between processes. */
const MIGRATION_LOCK = 0x51_1ce;

/**
 * A Postgres server through postgres.js. Several sluice processes may share
 * it (and a run); migrations run under an advisory lock so they don't race.
 *
 * postgres.js 3.4.x is patched (`patches/postgres+3.4.9.patch`, applied by
 * patch-package on install): when the server ends a connection inside a
 * transaction or a reservation (a restart, `pg_terminate_backend`, an
 * idle-in-transaction timeout), its queries fail with CONNECTION_CLOSED
 * instead of an uncaught TypeError ending the process, and none of them runs
 * later on another session outside its transaction.
 *
 * @example
 * const db = await connect({ url: process.env.DATABASE_URL! });
 */
export interface PoolOptions {
  /** Connections at most. Default 8 (a local run's loops share them). */
  max?: number;
  /** Seconds an unused connection stays open; 0 keeps it. Default 0. */
  idleTimeoutS?: number;
  /** Seconds a connection lives at most before it is replaced when next free; 0 keeps it. Default: postgres.js's 30–60 min. */
  maxLifetimeS?: number;
}

export async function connect(options: { url: string; prepare?: boolean; pool?: PoolOptions; migrate?: boolean }): Promise<Database> {
  const prepare = options.prepare ?? true;
  const pool = options.pool ?? {};
  const client = postgres(options.url, {
    max: pool.max ?? 8,
    ...(pool.idleTimeoutS !== undefined ? { idle_timeout: pool.idleTimeoutS } : {}),
    ...(pool.maxLifetimeS !== undefined ? { max_lifetime: pool.maxLifetimeS } : {}),
    onnotice: () => {},
    prepare,
    // Statements are prepared once per connection (see `preparedExecute`), but
    // planned for their actual parameters every time: id lists and JSON
    // payloads vary too much in size for one generic plan to fit them all.
    ...(prepare ? { connection: { plan_cache_mode: "force_custom_plan" } } : {}),
  });
  const db = drizzle(client, { schema }) as unknown as Drizzle;
  const description = `Postgres at ${maskUrl(options.url)}`;
  if (options.migrate === false) return wrap("postgres", db, description, () => client.end({ timeout: 5 }), prepare ? preparedExecute : undefined);
  try {
    const reserved = await client.reserve();
    try {
      await reserved`SELECT pg_advisory_lock(${MIGRATION_LOCK})`;
      await migrate(db as never, { migrationsFolder: MIGRATIONS_DIR });
    } finally {
      await reserved`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`.catch(() => {});
      reserved.release();
    }
  } catch (err) {
    await client.end({ timeout: 1 });
    throw err;
  }
  return wrap("postgres", db, description, () => client.end({ timeout: 5 }), prepare ? preparedExecute : undefined);
}

/**
 * drizzle's `execute` sends raw queries unprepared, and postgres.js then
 * needs two round trips per query (describe, then bind and execute). Named
 * prepared statements take one: the engine sends a few dozen distinct
 * statements thousands of times, so this halves its round trips.
 */
const preparedExecute: Execute = (db, query) => {
  const internals = db as unknown as { dialect: { sqlToQuery(q: SQL): { sql: string; params: unknown[] } }; session: { client: Sql } };
  const { sql: text, params } = internals.dialect.sqlToQuery(query);
  return internals.session.client.unsafe(text, params as never[], { prepare: true });
};

export function maskUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]*)@/, "//$1:***@");
}
