import postgres from "postgres";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import { MIGRATIONS_DIR, wrap, type Database, type Drizzle } from "../database.ts";
import * as schema from "../schema.ts";

/** Any fixed number: the advisory lock that serialises migrations between processes. */
const MIGRATION_LOCK = 0x51_1ce;

/**
 * A Postgres server through postgres.js. Several sluice processes may share
 * it (and a run); migrations run under an advisory lock so they don't race.
 *
 * @example
 * const db = await connect({ url: process.env.DATABASE_URL! });
 */
export async function connect(options: { url: string; max?: number }): Promise<Database> {
  const client = postgres(options.url, { max: options.max ?? 8, onnotice: () => {} });
  const db = drizzle(client, { schema }) as unknown as Drizzle;
  const description = `Postgres at ${maskUrl(options.url)}`;
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
  return wrap("postgres", db, description, () => client.end({ timeout: 5 }));
}

export function maskUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]*)@/, "//$1:***@");
}
