import { setMaxListeners } from "node:events";
import { SluiceError, WorkerStoppedError, errorMessage } from "../../core/errors.ts";
import { beatInSegment, leaveSegment, othersInSegment } from "../../store/workers.ts";
import type { RunContext, StagePlan } from "../context.ts";
import { sleep } from "../retry.ts";

/**
 * The barrier between a segment's chunks and the stage-by-stage pass after
 * them, across processes sharing a run on Postgres. A worker carrying chunks
 * says so on its row in `workers` (`segment`, kept alive by its heartbeat);
 * the later stages queue what is left only once no other live worker does.
 * A worker that died, or stopped (SIGSTOP, a paused VM), stops counting after
 * a lease without a heartbeat, as its claims do; one that wakes up to find a
 * lease gone by since its last heartbeat stops carrying chunks, since the
 * others may have taken its items over: `within` aborts the signal it gave `fn`.
 */
export function segmentBarrier(ctx: RunContext, head: StagePlan) {
  const leaseMs = ctx.options.leaseMs;
  const beat = async () => {
    if (!(await beatInSegment(ctx.db, ctx.workerId, head.index))) throw new SluiceError(`worker ${ctx.workerId} has no row in workers (it was retired, or never registered)`);
  };
  return {
    /** Run `fn` (which executes the segment's chunks) inside the barrier; it stops when `signal` aborts. */
    async within<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
      const lost = new AbortController();
      const lose = (why: string) => {
        if (!lost.signal.aborted) lost.abort(new WorkerStoppedError(`stopped carrying chunks: ${why}, so other processes may have taken this one's items over; \`sluice resume ${ctx.runId}\` continues the run`));
      };
      await beat();
      let lastBeat = Date.now();
      let beating = false;
      const timer = setInterval(() => {
        if (lost.signal.aborted || beating) return;
        const gap = Date.now() - lastBeat;
        if (gap > leaseMs) return lose(`no heartbeat for ${(gap / 1000).toFixed(1)} s, longer than the lease (${leaseMs / 1000} s)`);
        beating = true;
        beat().then(
          () => {
            lastBeat = Date.now();
            beating = false;
          },
          (err) => lose(`its heartbeat failed (${errorMessage(err)})`),
        );
      }, Math.max(100, leaseMs / 3));
      try {
        const signal = ctx.signal ? AbortSignal.any([lost.signal, ctx.signal]) : lost.signal;
        // Every provider call and backoff of the segment listens on it, as on the run's own signal.
        setMaxListeners(0, signal);
        return await fn(signal);
      } finally {
        clearInterval(timer);
        await leaveSegment(ctx.db, ctx.workerId, head.index).catch(() => {});
      }
    },
    /** Wait until no other live worker is carrying this segment's chunks. */
    async drained(): Promise<void> {
      for (;;) {
        if ((await othersInSegment(ctx.db, ctx.runId, ctx.workerId, head.index, leaseMs)) === 0) return;
        await sleep(200, ctx.signal);
      }
    },
  };
}

