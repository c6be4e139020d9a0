import { ancestorsOf } from "../core/dag.ts";
import { SluiceError } from "../core/errors.ts";
import { stableStringify } from "../core/hash.ts";
import type { PipelineDef } from "../core/types.ts";
import type { Database } from "../store/database.ts";
import type { StagePlan } from "./context.ts";
import { planRecord, planStages } from "./plan.ts";
import { copyRunItems, findOpenRerun, insertRun, latestFinishedRun, lockPipelineRuns, requireRun, type RunRow } from "../store/runs.ts";
import { copyFinishedWork } from "../store/work.ts";
import { newRunId, versionsOf } from "./runs.ts";

/**
 * A rerun is an ordinary run whose items are copied from a base run instead of
 * read from a file, and whose stages the named one depends on (every stage
 * before it, in a list of stages) start out as the base run left them (same
 * versions, so the same outputs). A stage before it on another branch runs
 * again, and the reuse rule computes it only where its inputs changed. From the named
 * stage on, the reuse rule does the rest: the stage is computed where no
 * output of its current version exists for an item's input, and a change is
 * carried downstream only where an output hash changed. Any runner can then
 * drive it by id. Gates are not part of a stage version, so a gate changed on
 * an upstream stage is not seen: rerun from that stage instead.
 */

export interface RerunRequest {
  /** The stage to recompute with its current definition. */
  stage: string;
  /** Base run id; default: the latest finished run of the pipeline. */
  from?: string;
  /** Stop after the named stage: downstream stages (and the commit target) are not touched. */
  only?: boolean;
  /** The file the pipeline was loaded from, when it is not `pipelines/<id>.ts`: recorded, so `resume` loads it again. */
  pipelineFile?: string;
}

/** How one stage of the rerun relates to the base run. */
export interface RerunStagePlan {
  id: string;
  version: string;
  /** The version the base run used, or null when the base run had no such stage. */
  baseVersion: string | null;
  /**
   * `upstream` (a stage the named one depends on: reused from the base run),
   * `target` (the named stage), `downstream`, `beside` (a stage before it on
   * another branch: run again, computed only where its inputs changed), or
   * `skipped` (after `--only`).
   */
  role: "upstream" | "target" | "downstream" | "beside" | "skipped";
}

export interface PreparedRerun {
  run: RunRow;
  base: RunRow;
  /** True when an unfinished rerun of the same base, stage and versions was found and is continued. */
  continued: boolean;
  stageIndex: number;
  stages: RerunStagePlan[];
}

/**
 * The base of a rerun: the given run, or the pipeline's latest finished run.
 *
 * @example
 * const base = await findBaseRun(db, "ticket-triage"); // latest finished run
 */
export async function findBaseRun(db: Database, pipelineId: string, runId?: string): Promise<RunRow> {
  if (runId) {
    const run = await requireRun(db, runId, pipelineId);
    if (!run.loaded_at) throw new SluiceError(`run ${runId} never finished reading its input; resume it (sluice resume ${runId}) or pick another base`);
    return run;
  }
  const latest = await latestFinishedRun(db, pipelineId);
  if (!latest) throw new SluiceError(`pipeline ${pipelineId} has no finished run to rerun from (sluice run ${pipelineId} --input <file> first)`);
  return latest;
}

/**
 * Plan a rerun against its base: which stages are reused, recomputed or
 * skipped. Refuses when a stage upstream of the named one changed since the
 * base run, because then the rerun could not reuse the base run's outputs for
 * it: the user should rerun from that stage instead.
 *
 * @example
 * const { stages } = planRerun(pipeline, base, { stage: "extract" });
 * stages.map((s) => `${s.id}: ${s.role}`); // ["filter: upstream", "classify: upstream", "extract: target", ...]
 */
export function planRerun(pipeline: PipelineDef, base: RunRow, request: RerunRequest): { stageIndex: number; stages: RerunStagePlan[] } {
  const plan = planStages(pipeline);
  const stageIndex = plan.findIndex((s) => s.id === request.stage);
  if (stageIndex < 0) throw new SluiceError(`pipeline ${pipeline.id} has no stage "${request.stage}" (stages: ${plan.map((s) => s.id).join(", ")})`);
  const baseVersions = new Map(base.stages.map((s) => [s.id, s.version]));
  // In a list of stages every stage before the named one is upstream; with branches, only those it depends on.
  const upstream = ancestorsOf(plan.map((s) => s.reads))[stageIndex]!;
  const stages = plan.map((s): RerunStagePlan => ({
    id: s.id,
    version: s.version,
    baseVersion: baseVersions.get(s.id) ?? null,
    role: upstream.has(s.index) ? "upstream" : s.index === stageIndex ? "target" : s.index < stageIndex ? "beside" : request.only ? "skipped" : "downstream",
  }));
  const changed = stages.filter((s) => s.role === "upstream" && s.version !== s.baseVersion);
  if (changed.length) {
    const what = changed.map((s) => (s.baseVersion ? `${s.id} (${s.baseVersion} → ${s.version})` : `${s.id} (new)`)).join(", ");
    const are = changed.length > 1 ? "are" : "is";
    throw new SluiceError(`${what} changed since run ${base.id} and ${are} upstream of ${request.stage}: rerun --stage ${changed[0]!.id} instead`);
  }
  return { stageIndex, stages };
}

/** True when the base run planned the `upstream` stages exactly as the pipeline does now. */
function sameUpstream(base: RunRow, plan: StagePlan[], upstream: readonly number[]): boolean {
  return upstream.map((i) => plan[i]!).every((p) => {
    const b = base.stages[p.index];
    return b !== undefined && b.id === p.id && b.version === p.version && stableStringify(b.reads) === stableStringify(p.reads);
  });
}

/**
 * Create (or continue) the run of a rerun: a new run row whose items and
 * rejected rows are copied from the base run, already marked loaded, with
 * `options = { mode: "rerun", baseRunId, stage, stopAfter? }`. Drive it with
 * any runner (the local runner's `resumeRun`, or Trigger.dev).
 *
 * @example
 * const { run } = await prepareRerun(db, pipeline, { stage: "extract" });
 * const summary = await resumeRun({ db, pipeline, providers }, run.id);
 */
export async function prepareRerun(db: Database, pipeline: PipelineDef, request: RerunRequest): Promise<PreparedRerun> {
  const base = await findBaseRun(db, pipeline.id, request.from);
  const { stageIndex, stages } = planRerun(pipeline, base, request);
  const plan = planStages(pipeline);
  const versions = versionsOf(plan);
  const options: Record<string, unknown> = { mode: "rerun", baseRunId: base.id, stage: request.stage, versions };
  if (request.only) options.stopAfter = stageIndex;
  if (request.pipelineFile) options.pipelineFile = request.pipelineFile;

  return db.transaction(async (tx) => {
    // Same lock as `sluice run`: two reruns started together share one run.
    await lockPipelineRuns(tx, pipeline.id);
    const open = await findOpenRerun(tx, { pipelineId: pipeline.id, baseRunId: base.id, stage: request.stage, versions, stopAfter: request.only ? stageIndex : undefined });
    if (open) return { run: open, base, continued: true, stageIndex, stages };

    const run = await insertRun(tx, {
      id: newRunId(),
      pipelineId: pipeline.id,
      inputPath: base.input_path,
      fingerprint: base.input_fingerprint,
      stages: planRecord(pipeline, plan),
      options,
      loaded: { rowsRead: base.rows_read },
    });
    await copyRunItems(tx, base.id, run.id);
    const upstream = stages.flatMap((s, i) => (s.role === "upstream" ? [i] : []));
    if (sameUpstream(base, plan, upstream)) {
      // The upstream stages are the base run's, version for version and read for read, over
      // the same items: their results are the base run's results. Taking them over as they
      // are (reused, no attempts) is what the reuse rule would conclude item by item, without
      // the walk; it also keeps upstream as it was where the base run dead-lettered an item.
      await copyFinishedWork(tx, base.id, run.id, upstream);
    }
    return { run, base, continued: false, stageIndex, stages };
  });
}
