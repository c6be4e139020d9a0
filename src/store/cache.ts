import { sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { anyText, textArray } from "./sql.ts";

/**
 * `request_cache`: provider answers by request hash (model, messages, schema,
 * parameters and the endpoint that answered). An identical request is never
 * paid for twice; `src/engine/reuse.ts` says when it is consulted.
 */

export interface CacheEntry {
  requestHash: string;
  provider: string;
  model: string;
  response: unknown;
}

/** Cached answers for these request hashes, by hash (hashes with none are absent). */
export async function cachedResponses<R = unknown>(db: Database, hashes: readonly string[]): Promise<Map<string, R>> {
  const found = new Map<string, R>();
  if (hashes.length === 0) return found;
  const rows = await db.rows<{ request_hash: string; response: R }>(sql`
    SELECT request_hash, response FROM request_cache WHERE request_hash = ${anyText(hashes)}`);
  for (const row of rows) found.set(row.request_hash, row.response);
  return found;
}

/** Keep an answer; the first one stored for a hash stays. */
export async function cacheResponse(db: Database, entry: CacheEntry): Promise<void> {
  await db.rows(sql`
    INSERT INTO request_cache (request_hash, provider, model, response)
    VALUES (${entry.requestHash}, ${entry.provider}, ${entry.model}, ${JSON.stringify(entry.response)}::jsonb)
    ON CONFLICT (request_hash) DO NOTHING`);
}

/**
 * Claim request hashes for `workerId` before paying for them. Returns the
 * ones won (nobody claimed them, or this worker did, or their worker has had
 * no heartbeat within the lease, or their provider batch is collected) and
 * the answers already in the cache (those are not claimed). A payer writes its
 * answer and gives its claim up in one statement (`results.ts`), and a claim
 * won is checked against the cache once more in a later statement, so no
 * moment lets a second worker both miss the answer and keep the claim.
 */
export async function claimRequests<R = unknown>(db: Database, hashes: readonly string[], workerId: string, leaseMs: number): Promise<{ won: Set<string>; answers: Map<string, R> }> {
  const won = new Set<string>();
  const answers = new Map<string, R>();
  if (hashes.length === 0) return { won, answers };
  // Rows are taken in hash order, in every process: claims of overlapping sets cannot deadlock.
  const rows = await db.rows<{ request_hash: string; response: R | null; won: boolean }>(sql`
    WITH cached AS (SELECT request_hash, response FROM request_cache WHERE request_hash = ${anyText(hashes)}),
    claimed AS (
      INSERT INTO request_claims AS c (request_hash, worker_id)
      SELECT h, ${workerId} FROM (SELECT DISTINCT h FROM unnest(${textArray(hashes)}::text[]) AS h) d
      WHERE h NOT IN (SELECT request_hash FROM cached)
      ORDER BY h
      ON CONFLICT (request_hash) DO UPDATE SET worker_id = excluded.worker_id, claimed_at = now()
      WHERE c.worker_id = excluded.worker_id
        -- A worker's claim lapses with its heartbeat; a provider batch's, once the batch is collected.
        OR (c.worker_id NOT LIKE 'batch:%'
          AND c.worker_id NOT IN (SELECT id FROM workers WHERE heartbeat_at > now() - make_interval(secs => ${leaseMs / 1000})))
        OR (c.worker_id LIKE 'batch:%'
          AND NOT EXISTS (SELECT 1 FROM provider_batches b WHERE b.id = substr(c.worker_id, 7) AND b.status <> 'collected'))
      RETURNING c.request_hash)
    SELECT request_hash, response, false AS won FROM cached
    UNION ALL SELECT request_hash, NULL, true FROM claimed`);
  for (const r of rows) {
    if (r.won) won.add(r.request_hash);
    else answers.set(r.request_hash, r.response as R);
  }
  if (won.size === 0) return { won, answers };
  // The statement above read the cache in the snapshot it started with, but
  // its insert saw the latest claims: a payer that committed its answer (and
  // gave its claim up) in between left this worker a claim on a request
  // already answered. A new statement sees that commit: take the answer and
  // give the claim up instead of paying again.
  const late = await db.rows<{ request_hash: string; response: R }>(sql`
    WITH found AS (SELECT request_hash, response FROM request_cache WHERE request_hash = ${anyText([...won])}),
    released AS (
      DELETE FROM request_claims WHERE request_hash IN (
        SELECT request_hash FROM request_claims WHERE request_hash IN (SELECT request_hash FROM found) AND worker_id = ${workerId}
        ORDER BY request_hash FOR UPDATE))
    SELECT request_hash, response FROM found`);
  for (const r of late) {
    won.delete(r.request_hash);
    answers.set(r.request_hash, r.response);
  }
  return { won, answers };
}

/** Give claims up (the answers are written, or the calls failed and another worker may try). */
export async function releaseRequests(db: Database, hashes: readonly string[], workerId: string): Promise<void> {
  if (hashes.length === 0) return;
  await db.rows(sql`
    DELETE FROM request_claims WHERE request_hash IN (
      SELECT request_hash FROM request_claims WHERE request_hash = ${anyText(hashes)} AND worker_id = ${workerId}
      ORDER BY request_hash FOR UPDATE)`);
}

/** Keep many answers at once (a journal replayed after a crash); answers already stored stay. Returns the hashes that were new. */
export async function cacheResponses(db: Database, entries: readonly CacheEntry[]): Promise<Set<string>> {
  if (entries.length === 0) return new Set();
  const inserted = await db.rows<{ request_hash: string }>(sql`
    INSERT INTO request_cache (request_hash, provider, model, response)
    SELECT e."requestHash", e.provider, e.model, e.response
    FROM jsonb_to_recordset(${JSON.stringify(entries)}::jsonb) AS e("requestHash" text, provider text, model text, response jsonb)
    -- In hash order, as every statement inserting several answers: none waits on another that waits on it.
    ORDER BY e."requestHash"
    ON CONFLICT (request_hash) DO NOTHING
    RETURNING request_hash`);
  return new Set(inserted.map((r) => r.request_hash));
}
