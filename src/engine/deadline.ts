import { fmtMs } from "../core/duration.ts";
import { parseDuration } from "../core/duration.ts";
import type { LlmStage } from "../core/types.ts";
import { recentTurnarounds } from "../store/batches.ts";
import { realtimeLatency } from "../store/spend.ts";
import type { RunContext } from "./context.ts";

/**
 * Deadlines decide the mode of an `auto` stage. A batch costs half, but the
 * provider promises its answers within 24 hours only; realtime answers now.
 * With a deadline (the run's `--deadline`, the stage's `deadline`), a stage
 * goes by batch when the provider's recent batches came back in time with
 * room to spare, and a batch still running when that room runs out is
 * cancelled: what it finished is kept (and paid at the batch price), the
 * rest goes out realtime before the deadline.
 */

/** What the provider promises for a batch, used when none of its batches was seen to end. */
export const BATCH_WINDOW_MS = 24 * 3_600_000;
/** Turnarounds of the provider's latest batches the decision rests on. */
const TURNAROUNDS = 20;
/** Realtime latency assumed per call before any was measured. */
const DEFAULT_LATENCY_MS = 2_000;

export interface ModeDecision {
  mode: "batch" | "realtime";
  why: string;
}

/** The deadline that applies to a stage of the context's run: the earlier of the run's and the stage's own. */
export function deadlineOf(ctx: RunContext, def: LlmStage): Date | undefined {
  const times: number[] = [];
  if (ctx.deadlineAt) times.push(ctx.deadlineAt.getTime());
  const own = def.deadline !== undefined ? parseDuration(def.deadline, `stage ${def.id}: deadline`) : def.deadlineMinutes !== undefined ? def.deadlineMinutes * 60_000 : undefined;
  if (own !== undefined && ctx.runStartedAt) times.push(ctx.runStartedAt.getTime() + own);
  return times.length ? new Date(Math.min(...times)) : undefined;
}

/**
 * How long sending `calls` realtime would take at the stage's concurrency,
 * from the latency of the model's recent realtime calls.
 */
export async function realtimeNeedMs(ctx: RunContext, def: LlmStage, calls: number): Promise<number> {
  const latency = (await realtimeLatency(ctx.db, def.model, 200)) ?? DEFAULT_LATENCY_MS;
  return Math.ceil(calls / Math.max(1, ctx.options.concurrency)) * latency;
}

/**
 * The time after which a batch of `calls` requests is given up on: early
 * enough that what it has not finished can still be sent realtime before the
 * deadline (twice the realtime time, and a tenth of the time the run had, at
 * least five seconds).
 */
export async function batchCutoff(ctx: RunContext, def: LlmStage, calls: number, deadline: Date): Promise<Date> {
  const need = await realtimeNeedMs(ctx, def, calls);
  const window = deadline.getTime() - (ctx.runStartedAt?.getTime() ?? Date.now());
  return new Date(deadline.getTime() - Math.max(2 * need, window / 10, 5_000));
}

/**
 * `auto` mode for a stage about to send `calls` requests through a provider
 * with a batch API: batch when there are enough calls and, with a deadline,
 * the provider's recent batches (the slowest of the latest twenty; 24 h when
 * none was seen) would end before the batch's cutoff.
 */
export async function decideMode(ctx: RunContext, def: LlmStage, endpoint: string, calls: number): Promise<ModeDecision> {
  const min = ctx.options.autoBatchMinItems;
  if (calls < min) return { mode: "realtime", why: `${calls} call${calls === 1 ? "" : "s"} to make, fewer than the ${min} a batch is worth` };
  const deadline = deadlineOf(ctx, def);
  if (!deadline) return { mode: "batch", why: `${calls} calls and no deadline: the batch API at its discount` };
  const seen = await recentTurnarounds(ctx.db, endpoint, TURNAROUNDS);
  const turnaround = seen.length ? Math.max(...seen) : BATCH_WINDOW_MS;
  const basis = seen.length ? `the slowest of ${endpoint}'s last ${seen.length} batch${seen.length === 1 ? "" : "es"} took ${fmtMs(turnaround)}` : `no batch of ${endpoint} seen to end, so its ${fmtMs(BATCH_WINDOW_MS)} window`;
  const need = await realtimeNeedMs(ctx, def, calls);
  const cutoff = await batchCutoff(ctx, def, calls, deadline);
  const room = cutoff.getTime() - Date.now();
  if (turnaround <= room) return { mode: "batch", why: `${calls} calls; ${basis}, within the ${fmtMs(room)} before the batch would be cut for the deadline at ${deadline.toISOString()}` };
  const left = room > 0 ? `the ${fmtMs(room)} a batch would have` : `any batch (${fmtMs(deadline.getTime() - Date.now())} left, and about ${fmtMs(need)} to send them realtime)`;
  return { mode: "realtime", why: `${calls} calls; ${basis}, too long for ${left} before the deadline at ${deadline.toISOString()}` };
}


export { fmtMs };
