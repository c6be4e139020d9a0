import { sql } from "drizzle-orm";
import { publicTargetUrl } from "../core/target.ts";
import type { Database } from "./database.ts";

/**
 * Targets in another database than the store (`target.url`). One pool per
 * URL for the process, opened on first use without sluice's migrations: that
 * database holds only the target tables and their `target_ledger`, created
 * here on first use. Its connections close when idle, and all of them with
 * `closeTargetDatabases` (the CLI and the test harness call it when they
 * close the store), so a process never stays alive for them.
 *
 * A write to such a target cannot share a transaction with the store: it is
 * made first, in its own transaction with its ledger rows, then the store
 * records the items committed. A crash between the two leaves the items to
 * be committed again, and the idempotent upsert then changes nothing (see
 * `results.ts`).
 */

const open = new Map<string, Promise<Database>>();

/** The database a commit target lives in: the store itself, or the one at `url`. */
export function targetDatabase(store: Database, url: string | undefined): Promise<Database> {
  if (url === undefined) return Promise.resolve(store);
  let db = open.get(url);
  if (!db) {
    db = connectTarget(url);
    open.set(url, db);
    db.catch(() => open.delete(url));
  }
  return db;
}

/** Whether a target lives outside the store. */
export function isExternal(store: Database, target: Database): boolean {
  return target !== store;
}

async function connectTarget(url: string): Promise<Database> {
  const { connect } = await import("./postgres-js/index.ts");
  let db: Database;
  try {
    db = await connect({ url, migrate: false, pool: { max: 4, idleTimeoutS: 2 } });
    await ensureLedger(db);
  } catch (err) {
    throw new Error(`cannot open the commit target's database ${publicTargetUrl(url)}: ${(err as Error).message}`);
  }
  return db;
}

/** The ledger in a target's own database: the same table the store's migrations create, made here on first use. */
async function ensureLedger(db: Database): Promise<void> {
  // Made by whoever set the database up, it is only checked for: creating its indexes needs to own it.
  const [found] = await db.rows<{ t: string | null }>(sql`SELECT to_regclass('target_ledger')::text AS t`);
  if (found?.t) return;
  await db.transaction(async (tx) => {
    await tx.rows(sql`SELECT pg_advisory_xact_lock(hashtext('sluice:target_ledger'))`);
    await tx.rows(sql`CREATE TABLE IF NOT EXISTS target_ledger (
      id bigserial PRIMARY KEY NOT NULL,
      run_id text NOT NULL,
      target text NOT NULL,
      key text NOT NULL,
      op text NOT NULL,
      before jsonb,
      after jsonb,
      at timestamp with time zone DEFAULT now() NOT NULL)`);
    await tx.rows(sql`CREATE INDEX IF NOT EXISTS target_ledger_run ON target_ledger USING btree (run_id)`);
    await tx.rows(sql`CREATE INDEX IF NOT EXISTS target_ledger_key ON target_ledger USING btree (target, key)`);
  });
}

/** Close every target database this process opened. */
export async function closeTargetDatabases(): Promise<void> {
  const all = [...open.values()];
  open.clear();
  await Promise.all(all.map(async (db) => (await db.catch(() => undefined))?.close()));
}
