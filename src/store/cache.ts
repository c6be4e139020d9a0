import { sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { anyText } from "./sql.ts";

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
