import { stageChunks, type RunContext } from "../../engine/index.ts";

/**
 * How the Trigger.dev runner names a slice of a stage without carrying it: a
 * range of item ids in the store's own ordering. A payload stays a few hundred
 * bytes whatever the chunk size, and the stage task reads the ids back.
 */
export interface ChunkRange {
  /** Position of the chunk in this round's ordering; part of its idempotency key. */
  chunk: number;
  first: string;
  last: string;
  /** Items in the range when it was planned (for reports; the task re-reads the range). */
  size: number;
  /** Of those, items still open (queued, in flight, or waiting for a retry) when it was planned. */
  open: number;
}

/**
 * Cut a stage's items into ranges of `size`. Round 0 cuts over every item the
 * stage has, whatever its status, so a retried orchestrator attempt cuts
 * exactly the same chunks (and hits the same idempotency keys) however far
 * the first attempt got; the orchestrator then sends only ranges with open
 * items. Later rounds cut over the items still open.
 */
export function chunkRanges(ctx: RunContext, stageIndex: number, size: number, openOnly: boolean): Promise<ChunkRange[]> {
  return stageChunks(ctx, stageIndex, size, openOnly);
}
