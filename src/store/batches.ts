import { eq, sql } from "drizzle-orm";
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
  /** The provider's own id, for its API. */
  batchId: string;
  provider: string;
  status: string;
  requests: Record<string, E>;
}

/** A batch's key in the store: the provider's id, qualified by the endpoint that gave it. */
export const batchKey = (batchId: string, endpoint: string) => `${batchId}@${endpoint}`;

/** The claim a batch holds its items under. */
export const batchClaimant = (batchId: string) => `batch:${batchId}`;

/**
 * Record a submitted batch and hand its items over to it (from `from`, or from
 * whoever holds them for a sole worker), in one transaction: a process that
 * dies after this is followed by one that polls the batch, never by one that
 * pays for it again.
 */
export async function recordBatch(db: Database, at: StageRef, batch: BatchRow, workerId: string, itemIds: readonly string[], from: string | undefined, requestHashes: readonly string[] = []): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.rows(sql`
      INSERT INTO provider_batches (id, batch_id, run_id, stage_index, provider, status, requests, worker_id)
      VALUES (${batch.id}, ${batch.batchId}, ${at.runId}, ${at.stageIndex}, ${batch.provider}, ${batch.status}, ${JSON.stringify(batch.requests)}::jsonb, ${workerId})`);
    await handOver(tx, at, itemIds, batchClaimant(batch.id), from);
    // The requests' claims go with them: held while the batch is uncollected, whoever polls it.
    if (requestHashes.length) {
      await tx.rows(sql`UPDATE request_claims SET worker_id = ${batchClaimant(batch.id)} WHERE request_hash = ${anyText(requestHashes)} AND worker_id = ${workerId}`);
    }
  });
}

/**
 * Take over the uncollected batches of a stage whose worker is gone (no
 * heartbeat within the lease) and return them. With `everyoneElse` (embedded
 * PGlite, where no other process can be alive) every batch not `workerId`'s
 * is taken over at once, as its claims are.
 */
export async function adoptOrphanBatches<E>(db: Database, at: StageRef, workerId: string, leaseMs: number, everyoneElse = false): Promise<BatchRow<E>[]> {
  return db.rows<BatchRow<E>>(sql`
    UPDATE provider_batches b SET worker_id = ${workerId}, updated_at = now()
    WHERE b.run_id = ${at.runId} AND b.stage_index = ${at.stageIndex} AND b.status NOT IN ('collected')
      AND b.worker_id IS DISTINCT FROM ${workerId}
      ${everyoneElse ? sql`` : sql`AND (b.worker_id IS NULL OR b.worker_id NOT IN (
        SELECT id FROM workers WHERE heartbeat_at > now() - make_interval(secs => ${leaseMs / 1000})))`}
    RETURNING b.id, coalesce(b.batch_id, b.id) AS "batchId", b.provider, b.status, b.requests`);
}

/** The provider's status of a batch (`collected` once its results are written). */
export async function setBatchStatus(db: Database, batchId: string, status: string): Promise<void> {
  await db.db.update(providerBatches).set({ status, updatedAt: sql`now()` }).where(eq(providerBatches.id, batchId));
}

/** A batch whose results are all written: collected, and its requests' claims given up. */
export async function markBatchCollected(db: Database, batchId: string): Promise<void> {
  await setBatchStatus(db, batchId, "collected");
  await db.db.delete(requestClaims).where(eq(requestClaims.workerId, batchClaimant(batchId)));
}
