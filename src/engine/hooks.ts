import type { InflightAnswers } from "./inflight.ts";
import type { ItemResult } from "./results.ts";

/** What the scheduler gives the chunks of one stage to share. */
export interface ChunkHooks {
  /** Bounds provider calls in flight across every chunk of a stage. */
  acquire: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Results written so far (for progress displays). */
  onPersisted?: (results: ItemResult[]) => void;
  /**
   * Answers of requests sent by any chunk of this stage in this process, by
   * request hash: a chunk that needs the same request waits for that answer
   * instead of paying for it again (the request cache covers what is written).
   */
  inflight?: InflightAnswers;
  /**
   * Set when a call of the stage failed for every item alike (a revoked key):
   * no other chunk of the stage sends another call.
   */
  halted?: { error?: unknown };
}

/** Writes a group of results (and reports them as persisted). */
export type Flush = (results: ItemResult[]) => Promise<void>;

/**
 * What a chunk's model calls gave so far (written), and the rest still to
 * come: `later` collects the provider batches the chunk sent. A chunk returns
 * this once its batches are out, and what `later` holds is what collecting
 * needs (ids and hashes), so the chunk's inputs and requests are not kept in
 * memory the hours a batch may take. (An async function keeps every local it
 * has until it returns, used or not: waiting inside the chunk's own frames
 * would hold them all.)
 */
export interface Sent {
  results: ItemResult[];
  later?: () => Promise<ItemResult[]>;
}

/** All of a chunk's results: those it has, then those `later` collects. */
export async function whenCollected(sent: Sent | Promise<Sent>): Promise<ItemResult[]> {
  const { results, later } = await sent;
  return later ? [...results, ...(await later())] : results;
}
