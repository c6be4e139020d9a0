import type { CommitStage } from "../core/types.ts";
import { decisionsInForce, editsInForce, requeueDecided } from "../store/reviews.ts";
import { reopenRun } from "../store/runs.ts";
import { compileSchema } from "../core/schema.ts";
import type { RunContext, StagePlan } from "./context.ts";
import type { ItemResult } from "./results.ts";

/**
 * Review decisions in the engine. A person's decision on an item a stage sent
 * to review (`sluice review`) is a human output layered over the stage's:
 * keyed like the output it judges, it is applied whenever that output is
 * written for a run (computed, reused, answered from the cache), so it holds
 * in every run and rerun where the output is unchanged, and is asked again
 * where it changed. The stage's own output keeps the model's verdict; the
 * item's status at the stage becomes the person's: `validated` (approved, or
 * edited, and it goes on) or `rejected` (it stops).
 */

/** Settle the results a stage sent to review that a decision in force covers (in place, before they are written). */
export async function applyDecisions(ctx: RunContext, stage: StagePlan, results: ItemResult[]): Promise<void> {
  const review = results.filter((r) => r.status === "needs_review" && r.inputHash);
  if (review.length === 0) return;
  const decisions = await decisionsInForce(ctx.db, { pipeline: ctx.pipeline.id, stageId: stage.id, stageVersion: stage.version }, review.map((r) => ({ itemId: r.itemId, inputHash: r.inputHash! })));
  for (const r of review) {
    const d = decisions.get(r.itemId);
    if (!d) continue;
    const verb = d.decision === "reject" ? "rejected" : d.decision === "edit" ? "edited" : "approved";
    // At a commit stage (an audit sample), an approved row is committed, with its edits.
    const commit = ctx.pipeline.stages[stage.index]!.kind === "commit";
    r.status = d.decision === "reject" ? "rejected" : commit ? "committed" : "validated";
    if (commit && d.edits && r.targetRow && r.status === "committed") editRow(ctx, stage, r, d.edits);
    r.reviewId = d.id;
    r.errorClass = undefined;
    r.errorMessage = `${verb} by ${d.reviewer}${d.note ? `: ${d.note}` : ""}${r.errorMessage ? ` (was: ${r.errorMessage})` : ""}`;
  }
}

/** A commit's rows with the reviewers' edits of their items laid over (in place, before they are written). */
export async function applyEdits(ctx: RunContext, stage: StagePlan, results: ItemResult[]): Promise<void> {
  const rows = results.filter((r) => r.targetRow && r.status === "committed" && !r.reviewId);
  if (rows.length === 0) return;
  const edits = await editsInForce(ctx.db, ctx.runId, rows.map((r) => r.itemId));
  for (const r of rows) {
    const e = edits.get(r.itemId);
    if (e) editRow(ctx, stage, r, e);
  }
}

/**
 * A commit result's row with a reviewer's fields set (never its key). Edits
 * that make the row no longer fit a typed target's columns fail the item,
 * with the reason, instead of the write.
 */
function editRow(ctx: RunContext, stage: StagePlan, r: ItemResult, edits: Record<string, unknown>): void {
  const def = ctx.pipeline.stages[stage.index] as CommitStage;
  const { [def.target.key]: _key, ...fields } = edits;
  const data = { ...(r.targetRow!.data as Record<string, unknown>), ...fields };
  const checked = def.target.columns ? compileSchema(def.target.columns)(data) : undefined;
  if (checked && !checked.ok) {
    r.status = "failed_terminal";
    r.errorClass = "deterministic";
    r.errorMessage = `the reviewer's edits do not fit the columns of ${def.target.table}: ${checked.errors.join("; ")}`;
    return;
  }
  r.targetRow = { ...r.targetRow!, data };
}

/**
 * Before a run goes on (`resume`, `commit`): items whose review was decided
 * since, or whose decision changed, go back to their stage's queue, so the
 * decisions in force are applied. A finished run with any is reopened.
 * Returns how many items were sent back.
 */
export async function takeUpDecisions(ctx: RunContext, run: { id: string; status: string }): Promise<number> {
  const requeued = await requeueDecided(ctx.db, run.id);
  if (requeued > 0 && run.status !== "running") await reopenRun(ctx.db, run.id);
  return requeued;
}
