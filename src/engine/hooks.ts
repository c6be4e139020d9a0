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
