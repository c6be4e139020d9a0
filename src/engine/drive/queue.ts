import type { CommitStage } from "../../core/types.ts";
import { ensureTarget } from "../../store/targets.ts";
import { targetDatabase } from "../../store/target-databases.ts";
import { columnsOf } from "../../core/target.ts";
import { analyzeQueue, insertQueued, reachedAndQueued } from "../../store/work.ts";
import { stageRef, type RunContext, type StagePlan } from "../context.ts";
import { routeOf } from "./graph.ts";

/**
 * Queue `stage` for every item that reached it and has no row here yet: all
 * loaded items for the first stage, else those that advanced at a stage of its
 * frontier (the one before it, in a list of stages) and are open at none of
 * its dependencies (see `core/dag.ts`). Returns how many were queued.
 */
export async function enqueueStage(ctx: RunContext, stage: StagePlan, { analyzeIfNone = true } = {}): Promise<number> {
  const at = stageRef(ctx, stage);
  // Where the rows are already all there (the first stage, queued as items were
  // loaded; a later stage whose rows chunks wrote), two counts say so for less
  // than the insert would cost to find nothing to insert.
  const route = routeOf(ctx, stage);
  const counts = await reachedAndQueued(ctx.db, at, route);
  const inserted = counts.reached !== counts.queued ? await insertQueued(ctx.db, at, stage.id, route) : 0;
  // A later stage of a segment whose chunks wrote every row (nothing queued)
  // skips the statistics; see `analyzeQueue` for why they matter.
  if (inserted > 0 || analyzeIfNone) await analyzeQueue(ctx.db, { items: stage.index === 0 });
  return inserted;
}

/** Create the target table of every commit stage among `stages` (once per table, safe when processes race). */
export async function ensureTargets(ctx: RunContext, stages: readonly StagePlan[]): Promise<void> {
  for (const stage of stages) {
    const def = ctx.pipeline.stages[stage.index]!;
    if (def.kind === "commit") {
      const target = (def as CommitStage).target;
      await ensureTarget(await targetDatabase(ctx.db, target.url), target.table, columnsOf(target));
    }
  }
}
