import { BudgetExhaustedError, SluiceError, WorkerStoppedError } from "../../core/errors.ts";
import type { CommitStage } from "../../core/types.ts";
import type { Usage } from "../../providers/types.ts";
import type { Database } from "../../store/database.ts";
import { exhaustRun, failRun, finishRun, reopenRun, type RunRow } from "../../store/runs.ts";
import { budgetRows, releaseStaleReservations } from "../../store/budgets.ts";
import { budgetStopReason } from "../budget.ts";
import { withdrawUncommitted } from "../../store/targets.ts";
import { targetDatabase } from "../../store/target-databases.ts";
import { reclaimStale, releaseClaims } from "../../store/work.ts";
import type { RunContext } from "../context.ts";
import { loadSource } from "../runs.ts";
import type { RunEvents } from "./events.ts";
import { runSegment } from "./passes.ts";
import { segmentsOf } from "./segments.ts";
import { runUnits } from "./graph.ts";
import { AnswerJournal, replayJournals } from "../journal.ts";
import { takeUpDecisions } from "../review.ts";

/**
 * Driving a run: the engine's scheduler. A runner opens the run, keeps its
 * worker alive (heartbeat) and calls `driveRun`; the engine loads the source,
 * takes back claims of dead workers, and executes the stages segment by
 * segment (see `passes.ts`), independent branches at once (`graph.ts`), then
 * finalises the run.
 */

/** The last stage a run executes: all of them, or the one a `rerun --only` stops after. */
export function stopAfterOf(ctx: RunContext, run: RunRow): number {
  return typeof run.options.stopAfter === "number" ? run.options.stopAfter : ctx.plan.length - 1;
}

/** Read the run's source into the store if that has not happened yet (idempotent). Returns the rows read. */
export async function ensureLoaded(ctx: RunContext, run: RunRow): Promise<number> {
  if (run.loaded_at) return run.rows_read;
  return loadSource(ctx, run.input_path ?? "");
}

/** Withdraw target rows of items that no longer reach the commit stage, and mark the run finished. */
export async function finalizeRun(ctx: RunContext, options: { stopAfter?: number } = {}): Promise<void> {
  const last = ctx.plan[ctx.plan.length - 1]!;
  const stop = options.stopAfter ?? last.index;
  if (stop === last.index && last.kind === "commit") {
    const target = (ctx.pipeline.stages[last.index] as CommitStage).target;
    await withdrawUncommitted(ctx.db, target.table, ctx.runId, last.index, await targetDatabase(ctx.db, target.url));
  }
  await finishRun(ctx.db, ctx.runId);
}

/**
 * A worker's part of a run stopped at a budget: what its calls cost is
 * settled, the items it held go back to the queue (for `resume`), and the run
 * is recorded `budget_exhausted` with the reason.
 */
export async function stopAtBudget(ctx: RunContext, err: BudgetExhaustedError): Promise<void> {
  await ctx.budget?.flush();
  await releaseClaims(ctx.db, ctx.runId, ctx.workerId);
  // The reason says what was spent once this worker's calls have settled, not when the first one was refused.
  const [now] = await budgetRows(ctx.db, [err.budget.key]);
  const reason = now ? budgetStopReason(ctx.runId, ctx.pipeline.id, now) : err.message;
  await exhaustRun(ctx.db, ctx.runId, reason);
  ctx.logger.warn(reason);
}

/**
 * Runs being driven in this process, per database. On embedded PGlite this
 * process is the only worker and keeps its claims in memory, so a second
 * driver of the same run here would compute (and pay for) items twice.
 */
const driving = new WeakMap<Database, Set<string>>();

/**
 * Execute every stage of a run that is not done yet, and finalise it. The
 * worker (`ctx.workerId`) must have a row in `workers`, kept alive by the
 * caller's heartbeat. An interrupted run (its signal aborted) stays
 * `running`, for `resume`; a run that reached a budget ends
 * `budget_exhausted` (and returns normally); anything else that stops the
 * whole run is recorded on it, so `sluice status` says why.
 */
export async function driveRun(ctx: RunContext, run: RunRow, events?: RunEvents): Promise<void> {
  const active = driving.get(ctx.db) ?? new Set<string>();
  driving.set(ctx.db, active);
  if (active.has(run.id)) throw new SluiceError(`run ${run.id} is already running in this process`);
  active.add(run.id);
  const journalDir = ctx.options.journalDir;
  const journal = journalDir ? new AnswerJournal(journalDir) : undefined;
  let written = false;
  try {
    // Review decisions recorded since the run last went through these items are taken up (and reopen a finished run).
    const decided = await takeUpDecisions(ctx, run);
    if (decided) ctx.logger.info(`${decided} reviewed item(s) go on with their review decisions`);
    if (run.status === "finished" && !decided) return;
    // A run stopped at its budget goes on (with the budget it now has).
    if (run.status === "budget_exhausted") await reopenRun(ctx.db, ctx.runId);
    // Answers a killed process had received but not written go to the request cache first.
    if (journalDir) {
      const { logger } = ctx;
      const price = (model: string, usage: Usage) => ({ costUsd: ctx.providers.cost(model, usage, "realtime"), listCostUsd: ctx.providers.cost(model, usage, "realtime") });
      const replayed = await replayJournals(
        ctx.db,
        journalDir,
        ({ pid, calls }) => logger.warn(`process ${pid} stopped with ${calls} call(s) in flight: paid, or about to be, with their answers lost; they are made again`),
        price,
      );
      if (replayed.answers) logger.info(`replayed ${replayed.answers} answer(s) a stopped process had received but not written`);
    }
    ctx = journal ? { ...ctx, journal } : ctx;
    if (!run.loaded_at) {
      const rows = await ensureLoaded(ctx, run);
      events?.loaded?.(rows);
    }
    // Embedded PGlite is single-process, so any claim not ours is from a dead process.
    await reclaimStale(ctx.db, ctx.runId, ctx.workerId, ctx.options.leaseMs, ctx.db.kind === "pglite");
    // So are what they had reserved of a budget.
    if (ctx.budget) await releaseStaleReservations(ctx.db, ctx.workerId, ctx.options.leaseMs, ctx.db.kind === "pglite");
    const stopAfter = stopAfterOf(ctx, run);
    // Segment by segment; where the stages branch, independent segments at once (see `graph.ts`).
    await runUnits(ctx, segmentsOf(ctx, ctx.plan.slice(0, stopAfter + 1)), (segment) => runSegment(ctx, segment, events));
    await finalizeRun(ctx, { stopAfter });
    written = true;
  } catch (err) {
    // A budget reached ends the run with a status of its own, not a failure: its items wait for a larger budget.
    if (err instanceof BudgetExhaustedError && !ctx.signal?.aborted) {
      await stopAtBudget(ctx, err);
      return;
    }
    // A worker that stopped taking part leaves a shared run to the others.
    if (!ctx.signal?.aborted && !(err instanceof WorkerStoppedError)) await failRun(ctx.db, ctx.runId, err instanceof Error ? err.message : String(err)).catch(() => {});
    throw err;
  } finally {
    // Settle what this process's calls cost, and give its reservations up.
    await ctx.budget?.close().catch((err: unknown) => ctx.logger.warn(`could not settle the budget: ${err instanceof Error ? err.message : String(err)}`));
    // An interrupted or failed run keeps its journal: the next process replays it.
    journal?.close({ written });
    active.delete(run.id);
  }
}
