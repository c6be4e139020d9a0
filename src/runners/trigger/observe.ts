import { logger as sdkLogger, metadata, tags } from "@trigger.dev/sdk";
import type { Logger, RunContext, StagePlan } from "../../engine/index.ts";
import { stageCounts } from "../../engine/index.ts";
import type { RunSummary } from "../../inspect/summary.ts";

/**
 * What a sluice run shows in the Trigger.dev dashboard: the engine's log
 * lines in each run's log, progress per stage in the orchestrator's run
 * metadata, and tags to find a pipeline's and a sluice run's task runs.
 */

/**
 * The engine's logger on a worker: every line goes to the SDK's `logger`, so
 * it appears in the run's log in the dashboard (outside a task run the SDK
 * drops it, as the engine's silent default would).
 */
export const triggerLogger: Logger = {
  info: (msg, fields) => sdkLogger.info(msg, fields),
  warn: (msg, fields) => sdkLogger.warn(msg, fields),
  debug: (msg, fields) => sdkLogger.debug(msg, fields),
};

/** Tags of every task run of a sluice run: the run, its pipeline, and (for chunk runs) the stage. */
export function runTags(runId: string, pipelineId: string, stageId?: string): string[] {
  return [`sluice:${runId}`, `pipeline:${pipelineId}`, ...(stageId ? [`stage:${stageId}`] : [])];
}

/**
 * Tag the orchestrator's own run once it knows which sluice run it works on
 * (a run started from the dashboard or a schedule was triggered without one).
 * Tags are for finding runs: failing to add them stops nothing.
 */
export async function tagOrchestrator(runId: string, pipelineId: string, log: Logger): Promise<void> {
  try {
    await tags.add(runTags(runId, pipelineId));
  } catch (err) {
    log.warn(`could not tag the orchestrator run with sluice:${runId}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Progress of one stage, as the orchestrator's run metadata holds it under `stages.<id>`. */
export interface StageProgress {
  total: number;
  open: number;
  byStatus: Record<string, number>;
  rounds: number;
  providerCalls: number;
  costUsd: number;
}

/**
 * Publish a stage's counts and the run's cost so far in the orchestrator's
 * run metadata (`runId`, `pipeline`, `stage`: the one in progress, `stages`,
 * `costUsd`). `progress` is the orchestrator's own record of every stage so
 * far, updated here. The SDK flushes metadata while the run goes on; outside
 * a task run (a script calling `orchestrate`) there is none to write to.
 */
export async function publishProgress(
  ctx: RunContext, stage: StagePlan, rounds: number, summary: RunSummary | undefined, progress: Record<string, StageProgress>,
): Promise<void> {
  const counts = await stageCounts(ctx, stage.index);
  const costs = summary?.stages.find((s) => s.id === stage.id);
  progress[stage.id] = {
    total: counts.total,
    open: counts.open,
    byStatus: counts.byStatus,
    rounds,
    providerCalls: costs?.providerCalls ?? progress[stage.id]?.providerCalls ?? 0,
    costUsd: costs?.costUsd ?? progress[stage.id]?.costUsd ?? 0,
  };
  try {
    const m = metadata.set("runId", ctx.runId).set("pipeline", ctx.pipeline.id).set("stage", stage.id).set("stages", structuredClone(progress) as never);
    if (summary) m.set("costUsd", summary.costUsd);
  } catch (err) {
    ctx.logger.debug(`no run metadata to publish progress to: ${err instanceof Error ? err.message : String(err)}`);
  }
}
