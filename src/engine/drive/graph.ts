import { setMaxListeners } from "node:events";
import { frontiersOf } from "../../core/dag.ts";
import type { StageRoute } from "../../store/work.ts";
import type { RunContext, StagePlan } from "../context.ts";

/**
 * The run's stages as a graph (see `core/dag.ts`): which stages queue an
 * item for which, and which passes may run at once. In a list of stages
 * every stage's frontier is the stage before it, and passes run one after
 * the other, as they always did.
 */

const frontiers = new WeakMap<readonly StagePlan[], number[][]>();

/** The frontier of every stage of the plan, by index (computed once per plan). */
export function frontiersFor(plan: readonly StagePlan[]): number[][] {
  let f = frontiers.get(plan);
  if (!f) frontiers.set(plan, (f = frontiersOf(plan.map((s) => s.reads))));
  return f;
}

/** Where `stage`'s items come from: its dependencies and its frontier. */
export function routeOf(ctx: RunContext, stage: StagePlan): StageRoute {
  return { deps: stage.reads, frontier: frontiersFor(ctx.plan)[stage.index]! };
}

/**
 * Run the passes of `units` (segments, each a list of stages) as their
 * dependencies allow: a unit starts once every unit holding a stage it
 * depends on has finished, so independent branches run at once, each with
 * its own claim loops and calls in flight, under the run's budget and the
 * providers' rate limits. Units start in stage order. When one fails, no
 * other starts; those running finish (what they computed is written and paid
 * for once), then the first failure is thrown.
 *
 * On a shared Postgres, a unit of several stages marks this worker as
 * carrying its chunks (`workers.segment`, one per worker: see `barrier.ts`),
 * so such units take turns in one process; single stages never wait.
 */
export async function runUnits(ctx: RunContext, units: readonly StagePlan[][], run: (unit: StagePlan[]) => Promise<void>): Promise<void> {
  const unitOf = new Map<number, number>();
  units.forEach((unit, u) => unit.forEach((s) => unitOf.set(s.index, u)));
  const needs = units.map((unit, u) => new Set(unit.flatMap((s) => s.reads).map((r) => unitOf.get(r)).filter((n): n is number => n !== undefined && n !== u)));
  const sole = ctx.db.kind === "pglite";
  // Two passes at once each listen on the run's signal from every call in flight.
  if (ctx.signal) setMaxListeners(0, ctx.signal);
  let turn: Promise<unknown> = Promise.resolve();
  const inTurn = (fn: () => Promise<void>) => {
    const mine = turn.then(fn);
    turn = mine.catch(() => {});
    return mine;
  };
  const done = new Set<number>();
  const started = new Set<number>();
  const running = new Map<number, Promise<{ u: number; err?: unknown; failed: boolean }>>();
  let failure: { err: unknown } | undefined;
  for (;;) {
    if (!failure) {
      units.forEach((unit, u) => {
        if (started.has(u) || ![...needs[u]!].every((n) => done.has(n))) return;
        started.add(u);
        const pass = !sole && unit.length > 1 ? inTurn(() => run(unit)) : run(unit);
        running.set(u, pass.then(() => ({ u, failed: false }), (err: unknown) => ({ u, err, failed: true })));
      });
    }
    if (running.size === 0) break;
    const end = await Promise.race(running.values());
    running.delete(end.u);
    if (end.failed) failure ??= { err: end.err };
    else done.add(end.u);
  }
  if (failure) throw failure.err;
}
