import { claimChunk, limitIdleInTransaction, lockChunk, pickChunk } from "../../store/work.ts";
import { stageRef, type RunContext, type StagePlan } from "../context.ts";

/**
 * How a worker claims a chunk of a stage's items, so that no item is
 * computed (or paid for) by two workers at once:
 *
 * - `lock`: the chunk's rows are locked (`FOR UPDATE SKIP LOCKED`) inside one
 *   transaction, and the work is computed and written in it. Nothing is
 *   written to claim, and if the process dies the locks go with its
 *   connection, so no lease or takeover is needed. For quick work (no model
 *   calls). Embedded PGlite runs transactions one at a time, so there the
 *   transaction alone is the claim.
 * - `lease`: the claim is written (`claimed_by`, one write per item) and
 *   kept alive by the worker's heartbeat; a worker that stops beating has
 *   its claims taken over. For model calls, which are slow and paid for:
 *   their results are committed as they come, outside one long transaction.
 * - `memory`: a sole worker (embedded PGlite, which one process opens at a
 *   time) keeps its claims in memory and writes nothing; whatever it held
 *   when it died is simply claimable again.
 */
export type ClaimMode = "lock" | "lease" | "memory";

/**
 * What a claimed chunk is handed to: the context to work in (inside the claim
 * transaction, for `lock`) and the ids. It may return work to continue once
 * the claim transaction has committed (model calls, made outside it).
 */
export type ChunkWork = (c: RunContext, ids: string[]) => Promise<(() => Promise<void>) | void>;

/** Claims chunks of `size` items of one stage; returns how many items were claimed (0: none claimable now). */
export type Claimer = (run: RunContext, work: ChunkWork) => Promise<number>;

/**
 * `exclusive`: claims of this stage are taken one at a time across every
 * process (a stage sent to a provider's batch API: its chunk goes out as one
 * batch, not split among concurrent claimers).
 */
export function claimer(ctx: RunContext, stage: StagePlan, size: number, mode: ClaimMode, { exclusive = false } = {}): Claimer {
  const at = stageRef(ctx, stage);
  const sole = ctx.db.kind === "pglite";
  // `memory`: one pick at a time, so two loops of this process never take the same items.
  const held = new Set<string>();
  let picking = Promise.resolve<unknown>(undefined);
  const pick = (c: RunContext) => {
    const next = picking.then(async () => {
      const ids = await pickChunk(c.db, at, size, held);
      for (const id of ids) held.add(id);
      return ids;
    });
    picking = next.catch(() => {});
    return next;
  };
  const finish = async (then: (() => Promise<void>) | void) => {
    if (then) await then();
  };

  if (mode === "lock") {
    return async (run, work) => {
      let then: (() => Promise<void>) | void = undefined;
      const n = await run.db.transaction(async (tx) => {
        if (!sole) await limitIdleInTransaction(tx);
        const c: RunContext = { ...run, db: tx, lockedClaim: true, soleWorker: sole };
        const ids = sole ? await pickChunk(tx, at, size, held) : await lockChunk(tx, at, size);
        if (ids.length) then = await work(c, ids);
        return ids.length;
      });
      await finish(then);
      return n;
    };
  }
  if (mode === "lease") {
    return async (run, work) => {
      const ids = await claimChunk(run.db, at, run.workerId, size, { exclusive });
      if (ids.length) await finish(await work(run, ids));
      return ids.length;
    };
  }
  return async (run, work) => {
    const c: RunContext = { ...run, soleWorker: true };
    const ids = await pick(c);
    try {
      if (ids.length) await finish(await work(c, ids));
    } finally {
      for (const id of ids) held.delete(id);
    }
    return ids.length;
  };
}
