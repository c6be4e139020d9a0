import type { SQL } from "drizzle-orm";
import type { PgDatabase } from "drizzle-orm/pg-core";
import type * as schema from "./schema.ts";

export type Drizzle = PgDatabase<any, typeof schema>;
export type DriverKind = "pglite" | "postgres";

/**
 * One database behind drizzle-orm, whichever driver. Both drivers return rows
 * of raw queries differently (`{ rows }` vs an array); `rows()` hides that.
 */
export interface Database {
  readonly kind: DriverKind;
  readonly db: Drizzle;
  /** Where it lives, with any password masked: for messages. */
  readonly description: string;
  rows<T = Record<string, unknown>>(query: SQL): Promise<T[]>;
  transaction<T>(fn: (tx: Database) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** Runs one raw query on a drizzle database (or transaction) and returns its rows. */
export type Execute = (db: Drizzle, query: SQL) => Promise<unknown[]>;

const drizzleExecute: Execute = async (db, query) => {
  const result = (await db.execute(query)) as unknown;
  return Array.isArray(result) ? result : (result as { rows: unknown[] }).rows;
};

export function wrap(kind: DriverKind, db: Drizzle, description: string, close: () => Promise<void>, execute: Execute = drizzleExecute): Database {
  const self: Database = {
    kind,
    db,
    description,
    async rows<T>(query: SQL): Promise<T[]> {
      return (await execute(db, query)) as T[];
    },
    transaction<T>(fn: (tx: Database) => Promise<T>): Promise<T> {
      return db.transaction((tx) => fn(wrap(kind, tx as unknown as Drizzle, description, async () => {}, execute)));
    },
    close,
  };
  return self;
}

export const MIGRATIONS_DIR = new URL("./migrations", import.meta.url).pathname;
