import { sql } from "drizzle-orm";
import type { Database } from "./database.ts";

/**
 * The operating-system processes of the Postgres server serving this
 * database's connections, so a benchmark can count the CPU time a statement
 * costs the server as well as the client (on a shared machine, wall time
 * mostly measures the neighbours). None on embedded PGlite: it runs in this
 * process, whose own CPU time covers it.
 */
export async function serverProcessIds(db: Database): Promise<number[]> {
  if (db.kind === "pglite") return [];
  const rows = await db.rows<{ pid: number }>(sql`
    SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'`);
  return rows.map((r) => r.pid);
}
