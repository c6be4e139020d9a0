import { join } from "node:path";
import type { Database } from "./database.ts";
import type { PoolOptions } from "./postgres-js/index.ts";

export type { Database, DriverKind } from "./database.ts";
export type { PoolOptions } from "./postgres-js/index.ts";

export interface OpenOptions {
  /** A Postgres URL; when absent, embedded PGlite is used. */
  url?: string;
  /** PGlite data directory; `":memory:"` for a throwaway database. Default `.sluice/pglite`. */
  dataDir?: string;
  /**
   * Postgres only: send queries as named prepared statements (one round trip
   * each). Default true; false behind a pooler in transaction mode (PgBouncer),
   * which cannot keep a statement on one connection (`SLUICE_PG_PREPARE=false`).
   */
  prepare?: boolean;
  /** Postgres only: pool size, idle timeout and lifetime (workers on Trigger.dev set all three). */
  pool?: PoolOptions;
}

/**
 * Open the store: postgres.js when a URL is given (or `DATABASE_URL` is set by
 * the caller), otherwise embedded PGlite under `.sluice/`. Migrations are
 * applied on open.
 *
 * @example
 * const db = await openDatabase({ url: process.env.DATABASE_URL });
 */
export async function openDatabase(options: OpenOptions = {}): Promise<Database> {
  return closingTargets(await open(options));
}

async function open(options: OpenOptions): Promise<Database> {
  if (options.url) {
    const { connect } = await import("./postgres-js/index.ts");
    return connect({ url: options.url, prepare: options.prepare, pool: options.pool });
  }
  const { connect } = await import("./pglite/index.ts");
  const dataDir = options.dataDir ?? join(process.cwd(), ".sluice", "pglite");
  return connect({ dataDir: dataDir === ":memory:" ? undefined : dataDir });
}

/** Closing the store also closes the databases of targets kept elsewhere (`target.url`), so nothing keeps the process alive. */
function closingTargets(db: Database): Database {
  return {
    ...db,
    async close() {
      const { closeTargetDatabases } = await import("./target-databases.ts");
      await closeTargetDatabases();
      await db.close();
    },
  };
}
