import { definitionsRead } from "../core/definition-cache.ts";
import { readsOf, stageVersion, versionParts } from "../core/define.ts";
import type { PipelineDef } from "../core/types.ts";
import type { StagePlan } from "./context.ts";

/** The stage plan of a pipeline as defined now: ids, versions and what each stage reads. */
export function planStages(pipeline: PipelineDef): StagePlan[] {
  definitionsRead();
  const ids = pipeline.stages.map((s) => s.id);
  return pipeline.stages.map((stage, index) => ({
    index,
    id: stage.id,
    kind: stage.kind,
    version: stageVersion(stage),
    reads: readsOf(pipeline, index).map((id) => ids.indexOf(id)),
  }));
}

/** What a run row records of its plan: enough to tell later which version ran and what defined it. */
export function planRecord(pipeline: PipelineDef, plan: StagePlan[]) {
  return plan.map((p) => ({ ...p, parts: versionParts(pipeline.stages[p.index]!) }));
}
