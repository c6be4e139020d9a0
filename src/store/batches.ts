import { eq, sql } from "drizzle-orm";
import { releaseHolder } from "./budgets.ts";
import type { Database } from "./database.ts";
import { providerBatches, requestClaims } from "./schema.ts";
import { anyText } from "./sql.ts";
import { handOver, type StageRef } from "./work.ts";

/**
 * `provider_batches`: every provider batch submitted, with the requests it
 * carries (so its answers can be reconciled, and repaired, after a restart)
 * and the worker collecting it. A batch is recorded before its first poll.
 */

export interface BatchRow<E = unknown> {
  /** The key here (see `batchKey`). */
  id: string;
  /** The provider's own id, for its API (while `submitting`, the submission's tag). */
  batchId: string;
  provider: string;
  /** `submitting` (recorded, maybe not yet at the provider), then the provider's status, then `collected`. */
  status: string;
  requests: Record<string, E>;
  /** When the row was recorded (read back by `adoptOrphanBatches`). */
  createdAt?: Date;
}

/** Requests written, and read back, per statement. */
const REQUESTS_PER_STATEMENT = 250;

/** A batch's key in the store: the provider's id, qualified by the endpoint that gave it. */
export const batchKey = (batchId: string, endpoint: string) => `${batchId}@${endpoint}`;

/** The claim a batch holds its items under. */
export const batchClaimant = (batchId: string) => `batch:${batchId}`;

/**
 * Record a batch about to be submitted (`status: submitting`, no provider id
 * yet) and hand its items over to it (from `from`, or from whoever holds them
 * for a sole worker), in one transaction: a process that dies after this is
 * followed by one that looks for the batch at the provider and polls it,
 * never by one that pays for it again.
 */
export async function recordBatch(db: Database, at: StageRef, batch: BatchRow, workerId: string, itemIds: readonly string[], from: string | undefined, requestHashes: readonly string[] = []): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.rows(sql`
      INSERT INTO provider_batches (id, batch_id, run_id, stage_index, provider, status, requests, worker_id)
      VALUES (${batch.id}, ${batch.status === "submitting" ? null : batch.batchId}, ${at.runId}, ${at.stageIndex}, ${batch.provider}, ${batch.status}, '{}'::jsonb, ${workerId})`);
    // A few hundred requests a statement: one JSON value of a whole batch (4.3 MB for the demo's
    // 2,582) grew embedded PGlite's memory by about 8 times its size, for good.
    const entries = Object.entries(batch.requests);
    for (let i = 0; i < entries.length; i += REQUESTS_PER_STATEMENT) {
      const piece = Object.fromEntries(entries.slice(i, i + REQUESTS_PER_STATEMENT));
      await tx.rows(sql`
        INSERT INTO provider_batch_requests (batch_row_id, custom_id, entry)
        SELECT ${batch.id}, e.key, e.value FROM jsonb_each(${JSON.stringify(piece)}::jsonb) AS e`);
    }
    await handOver(tx, at, itemIds, batchClaimant(batch.id), from);
    // The requests' claims go with them: held while the batch is uncollected, whoever polls it.
    if (requestHashes.length) {
      await tx.rows(sql`UPDATE request_claims SET worker_id = ${batchClaimant(batch.id)} WHERE request_hash = ${anyText(requestHashes)} AND worker_id = ${workerId}`);
    }
  });
}

/** The provider accepted the submission: its batch id, and `submitted`. */
export async function batchSubmitted(db: Database, id: string, batchId: string): Promise<void> {
  await db.db.update(providerBatches).set({ batchId, status: "submitted", updatedAt: sql`now()` }).where(eq(providerBatches.id, id));
}

/**
 * A submission that never reached the provider: its row goes, and its items
 * and request claims with it, in one transaction; the items go back to `to`
 * (the worker that tried, which writes their failure), or to the queue.
 */
export async function withdrawBatch(db: Database, at: StageRef, id: string, to: string | undefined): Promise<void> {
  const claimant = batchClaimant(id);
  await db.transaction(async (tx) => {
    await tx.rows(sql`DELETE FROM provider_batches WHERE id = ${id}`);
    await tx.rows(
      to === undefined
        ? sql`UPDATE work SET status = 'queued', claimed_by = NULL, updated_at = now()
            WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex} AND claimed_by = ${claimant} AND status = 'processing'`
        : sql`UPDATE work SET claimed_by = ${to}, updated_at = now()
            WHERE run_id = ${at.runId} AND stage_index = ${at.stageIndex} AND claimed_by = ${claimant} AND status = 'processing'`,
    );
    if (to === undefined) await tx.rows(sql`DELETE FROM request_claims WHERE worker_id = ${claimant}`);
    else await tx.rows(sql`UPDATE request_claims SET worker_id = ${to} WHERE worker_id = ${claimant}`);
    // Nothing was sent: what the batch reserved of a budget is free again.
    await releaseHolder(tx, claimant);
  });
}

/** Provider batch ids recorded since `since` (a batch found by time must not be one of these). */
export async function batchIdsSince(db: Database, since: Date): Promise<Set<string>> {
  const rows = await db.rows<{ batch_id: string }>(sql`SELECT batch_id FROM provider_batches WHERE batch_id IS NOT NULL AND created_at >= ${since.toISOString()}::timestamptz`);
  return new Set(rows.map((r) => r.batch_id));
}

/**
 * Take over the uncollected batches of a stage whose worker is gone (no
 * heartbeat within the lease) and return them. With `everyoneElse` (embedded
 * PGlite, where no other process can be alive) every batch not `workerId`'s
 * is taken over at once, as its claims are.
 */
export async function adoptOrphanBatches<E>(db: Database, at: StageRef, workerId: string, leaseMs: number, everyoneElse = false): Promise<BatchRow<E>[]> {
  return withRequests(db, await db.rows<BatchRow<E>>(sql`
    UPDATE provider_batches b SET worker_id = ${workerId}, updated_at = now()
    WHERE b.run_id = ${at.runId} AND b.stage_index = ${at.stageIndex} AND b.status NOT IN ('collected')
      AND b.worker_id IS DISTINCT FROM ${workerId}
      ${everyoneElse ? sql`` : sql`AND (b.worker_id IS NULL OR b.worker_id NOT IN (
        SELECT id FROM workers WHERE heartbeat_at > now() - make_interval(secs => ${leaseMs / 1000})))`}
    RETURNING b.id, coalesce(b.batch_id, b.id) AS "batchId", b.provider, b.status, b.requests, b.created_at AS "createdAt"`));
}

/**
 * The status of a batch cancelled at its cutoff for a deadline while still
 * running: kept until it ends, so whichever process collects it (after a
 * wait, or a crash) sends the requests it never ran realtime.
 */
export const BATCH_CUTTING = "cancelling";

/** Batches of a stage that this worker submitted or took over and has not collected yet (a task run resumed after a wait looks for them). */
export async function uncollectedBatchesOf<E>(db: Database, at: StageRef, workerId: string): Promise<BatchRow<E>[]> {
  return withRequests(db, await db.rows<BatchRow<E>>(sql`
    SELECT b.id, coalesce(b.batch_id, b.id) AS "batchId", b.provider, b.status, b.requests, b.created_at AS "createdAt"
    FROM provider_batches b
    WHERE b.run_id = ${at.runId} AND b.stage_index = ${at.stageIndex} AND b.status NOT IN ('collected') AND b.worker_id = ${workerId}
    ORDER BY b.created_at, b.id`));
}

/**
 * Each batch's requests, read from `provider_batch_requests` a page at a time
 * (after those a row recorded before that table keeps in its own column).
 */
async function withRequests<E>(db: Database, rows: BatchRow<E>[]): Promise<BatchRow<E>[]> {
  for (const row of rows) {
    const requests: Record<string, E> = { ...row.requests };
    let after = "";
    for (;;) {
      const page = await db.rows<{ custom_id: string; entry: E }>(sql`
        SELECT custom_id, entry FROM provider_batch_requests
        WHERE batch_row_id = ${row.id} AND custom_id > ${after} ORDER BY custom_id LIMIT ${REQUESTS_PER_STATEMENT * 4}`);
      for (const r of page) requests[r.custom_id] = r.entry;
      if (page.length < REQUESTS_PER_STATEMENT * 4) break;
      after = page.at(-1)!.custom_id;
    }
    row.requests = requests;
  }
  return rows;
}

/**
 * The entries recorded for these requests of a batch, by custom id: what a
 * collection holding only ids and hashes needs for the few it repairs or
 * sends realtime (the request as it was sent).
 */
export async function batchEntries<E>(db: Database, batchRowId: string, customIds: readonly string[]): Promise<Map<string, E>> {
  const entries = new Map<string, E>();
  const page = REQUESTS_PER_STATEMENT * 4;
  for (let i = 0; i < customIds.length; i += page) {
    const rows = await db.rows<{ custom_id: string; entry: E }>(sql`
      SELECT custom_id, entry FROM provider_batch_requests
      WHERE batch_row_id = ${batchRowId} AND custom_id = ${anyText(customIds.slice(i, i + page))}`);
    for (const r of rows) entries.set(r.custom_id, r.entry);
  }
  return entries;
}

export async function setBatchStatus(db: Database, batchId: string, status: string): Promise<void> {
  // The first status past in-progress marks when the provider was done with it (its turnaround);
  // `cancelling` (cancelled at a deadline's cutoff, still running) is not past it.
  const ended = status !== "collected" && status !== "submitted" && status !== "submitting" && status !== BATCH_CUTTING;
  await db.db
    .update(providerBatches)
    .set({ status, updatedAt: sql`now()`, ...(ended ? { endedAt: sql`coalesce(${providerBatches.endedAt}, now())` } : {}) })
    .where(eq(providerBatches.id, batchId));
}

/**
 * How long the provider's latest batches took, submission to end, in
 * milliseconds, newest first: at most `limit`, of batches that ended by
 * completing (cancelled or expired ones say nothing of how long a batch takes).
 */
export async function recentTurnarounds(db: Database, endpoint: string, limit: number): Promise<number[]> {
  const rows = await db.rows<{ ms: number }>(sql`
    SELECT (extract(epoch FROM ended_at - created_at) * 1000)::float8 AS ms FROM provider_batches
    WHERE ended_at IS NOT NULL AND id LIKE ${"%@" + endpoint} AND status IN ('ended', 'collected')
    ORDER BY ended_at DESC LIMIT ${limit}`);
  return rows.map((r) => r.ms);
}

/** A batch whose results are all written: collected, and its requests' claims given up. */
export async function markBatchCollected(db: Database, batchId: string): Promise<void> {
  await setBatchStatus(db, batchId, "collected");
  await db.db.delete(requestClaims).where(eq(requestClaims.workerId, batchClaimant(batchId)));
}
