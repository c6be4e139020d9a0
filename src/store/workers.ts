import { hostname } from "node:os";
import { and, eq, sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { workers } from "./schema.ts";

/**
 * `workers`: one row per live worker process (or Trigger.dev task run), kept
 * fresh by its heartbeat. A claim whose worker has no heartbeat within the
 * lease is taken over (`work.ts`); `segment` marks a worker carrying chunks
 * through a segment's stages, which later stages wait for.
 */

/** How long a worker's heartbeat keeps it live by default: its claims are taken over after that (the engine's `leaseMs`). */
export const DEFAULT_LEASE_MS = 30_000;

/**
 * The worker is alive. With `aheadMs`, its heartbeat is dated that far ahead:
 * a Trigger.dev task run about to be suspended (a checkpointed wait, when it
 * cannot beat) stays live through the wait, so nobody takes its claims or its
 * provider batches over meanwhile.
 */
export async function heartbeat(db: Database, workerId: string, runId: string, aheadMs = 0): Promise<void> {
  const at = aheadMs > 0 ? sql`now() + make_interval(secs => ${aheadMs / 1000})` : sql`now()`;
  await db.db
    .insert(workers)
    .values({ id: workerId, runId, pid: process.pid, host: hostname(), heartbeatAt: at })
    .onConflictDoUpdate({ target: workers.id, set: { heartbeatAt: at, runId: sql`excluded.run_id` } });
}

export async function retireWorker(db: Database, workerId: string): Promise<void> {
  await db.db.delete(workers).where(eq(workers.id, workerId));
}

/** Heartbeat that also says the worker is inside the segment starting at `segment`; false when the worker has no row. */
export async function beatInSegment(db: Database, workerId: string, segment: number): Promise<boolean> {
  const rows = await db.db.update(workers).set({ segment, heartbeatAt: sql`now()` }).where(eq(workers.id, workerId)).returning({ id: workers.id });
  return rows.length > 0;
}

export async function leaveSegment(db: Database, workerId: string, segment: number): Promise<void> {
  await db.db.update(workers).set({ segment: null }).where(and(eq(workers.id, workerId), eq(workers.segment, segment)));
}

/** Other live workers (heartbeat within the lease) of the run still inside the segment. */
export async function othersInSegment(db: Database, runId: string, workerId: string, segment: number, leaseMs: number): Promise<number> {
  const [row] = await db.rows<{ n: number }>(sql`
    SELECT count(*)::int AS n FROM workers
    WHERE run_id = ${runId} AND segment = ${segment} AND id <> ${workerId}
      AND heartbeat_at > now() - make_interval(secs => ${leaseMs / 1000})`);
  return row!.n;
}
