import { userInfo } from "node:os";
import { SluiceError } from "../core/errors.ts";
import type { Database } from "../store/database.ts";
import type { CommitStage, JsonObject, PipelineDef, StageInput } from "../core/types.ts";
import { recordDecisions, reviewItem, reviewQueue, type Decision, type QueueRow } from "../store/reviews.ts";
import { planStages } from "../engine/plan.ts";
import { requireRun, type RunRow } from "../store/runs.ts";

/**
 * The review queue as people work it, shared by `sluice review` and the
 * console's review page: what waits in a run (by stage, by reason), and
 * decisions recorded on chosen items. A decision takes effect when the run
 * goes on (`sluice commit <runId>`), never here: this writes
 * `review_decisions` only.
 */

export interface ReviewFilter {
  stage?: string;
  reason?: string;
}

export interface DecideOptions extends ReviewFilter {
  /** Who decides (default: the OS user). */
  by?: string;
  note?: string;
  /** Every item waiting in the run (or matching the filter). */
  all?: boolean;
  /** For `edit`: the fields of the committed row to set. */
  edits?: Record<string, unknown>;
  /**
   * The run's pipeline, when the caller has it: a decision on a run whose
   * stages it has changed since is refused (`refuseIfChanged`), and an edit
   * is checked against the row its commit stage writes (`checkEditedRow`).
   */
  pipeline?: PipelineDef;
}

/** A field name a reviewer may set: letters, digits and `_`, as in a column name. */
export const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * What waits for review in a run, with the reason; with `decided`, also the
 * items decided since (not yet taken up by `sluice commit`).
 *
 * @example
 * const waiting = await listReview(db, runId, { reason: "refund without order" });
 */
export async function listReview(db: Database, runId: string, filter: ReviewFilter & { decided?: boolean } = {}): Promise<QueueRow[]> {
  await requireRun(db, runId);
  return reviewQueue(db, runId, { stageId: filter.stage || undefined, reason: filter.reason || undefined, decided: filter.decided });
}

/**
 * Record one decision for each chosen item: by id (an item already decided
 * may be decided again), or every item still waiting that matches the
 * filter. Returns the items decided.
 *
 * @example
 * await decide(db, runId, "approve", ["T-00083"], { by: "alice", note: "refund ok without order" });
 */
export async function decide(db: Database, runId: string, decision: Decision, itemIds: readonly string[], options: DecideOptions = {}): Promise<QueueRow[]> {
  const reviewer = options.by?.trim() || defaultReviewer();
  const byId = itemIds.length > 0;
  if (!byId && !options.all && !options.stage && !options.reason) {
    throw new SluiceError(`name the items to ${decision}, or choose them by --stage, --reason or --all`);
  }
  if (decision === "edit") checkEdits(options.edits);
  const queue = await listReview(db, runId, { stage: options.stage, reason: options.reason, decided: byId });
  let chosen = queue;
  if (byId) {
    const found = new Map(queue.map((q) => [q.item_id, q]));
    const missing = itemIds.filter((id) => !found.has(id));
    if (missing.length) throw new SluiceError(`not waiting for review in run ${runId}: ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ` and ${missing.length - 5} more` : ""}`);
    chosen = itemIds.map((id) => found.get(id)!);
  }
  if (chosen.length === 0) throw new SluiceError(`nothing waits for review in run ${runId}${options.stage || options.reason ? " that matches" : ""}`);
  if (options.pipeline) {
    refuseIfChanged(await requireRun(db, runId), options.pipeline);
    if (decision === "edit") for (const q of chosen) await checkEditedRow(db, runId, q.item_id, options.pipeline, options.edits!);
  }
  await recordDecisions(
    db,
    chosen.map((q) => ({
      pipeline: q.pipeline,
      stageId: q.stage_id,
      stageVersion: q.stage_version,
      itemId: q.item_id,
      inputHash: q.input_hash,
      decision,
      edits: decision === "edit" ? options.edits : undefined,
      reviewer,
      note: options.note?.trim() || undefined,
      runId,
    })),
  );
  return chosen;
}

/**
 * A decision on a run whose stages the pipeline no longer defines is not
 * taken: `sluice commit` refuses to go on with such a run, so the decision
 * would wait for nothing. The run of the changed pipeline is where to decide.
 */
function refuseIfChanged(run: RunRow, pipeline: PipelineDef): void {
  const now = new Map(planStages(pipeline).map((s) => [s.id, s.version]));
  const changed = run.stages.filter((s) => now.get(s.id) !== s.version).map((s) => `${s.id} (${s.version.slice(0, 8)} → ${now.get(s.id)?.slice(0, 8) ?? "gone"})`);
  if (changed.length) {
    throw new SluiceError(`run ${run.id} was made with stages the pipeline has changed since: ${changed.join(", ")}; \`sluice commit ${run.id}\` could not take a decision on; decide on a run of the pipeline as it is now (sluice status, or sluice rerun)`);
  }
}

/**
 * An edit sets fields of the row the pipeline's commit stage writes for the
 * item, never its key (the commit keeps the key it computes, so a key edit
 * was dropped without a word), and only fields that row has (a misspelt
 * field was added to the row beside the one meant, which kept its value):
 * the row's fields are its typed target's columns, or those of the row the
 * stage makes from the item's outputs in this run.
 */
async function checkEditedRow(db: Database, runId: string, itemId: string, pipeline: PipelineDef, edits: Record<string, unknown>): Promise<void> {
  const commit = pipeline.stages.find((s): s is CommitStage => s.kind === "commit");
  if (!commit) return;
  const { table, key, columns } = commit.target;
  if (key in edits) throw new SluiceError(`${key} is the key of ${table}'s rows: an edit cannot change it (reject ${itemId} instead, or correct its input)`);
  let fields: string[] | undefined = columns?.properties ? Object.keys(columns.properties) : undefined;
  if (!fields) {
    const item = await reviewItem(db, runId, itemId);
    if (!item) return;
    const outputs = Object.fromEntries(item.stages.filter((s) => s.output !== null && s.output !== undefined).map((s) => [s.stage_id, s.output]));
    try {
      fields = Object.keys(commit.row({ itemId, item: item.input as JsonObject, outputs } as StageInput));
    } catch {
      return; // The row cannot be made from what the item has yet: its fields are not known here.
    }
  }
  const unknown = Object.keys(edits).filter((f) => !fields!.includes(f));
  if (unknown.length) {
    throw new SluiceError(`${unknown.map((f) => JSON.stringify(f)).join(", ")} ${unknown.length > 1 ? "are not fields" : "is not a field"} of the row ${table} gets for ${itemId} (its fields: ${fields.filter((f) => f !== key).join(", ")})`);
  }
}

function checkEdits(edits: Record<string, unknown> | undefined): void {
  if (!edits || Object.keys(edits).length === 0) throw new SluiceError("say what to change: at least one field=value");
  const bad = Object.keys(edits).find((f) => !FIELD_NAME.test(f));
  if (bad !== undefined) throw new SluiceError(`field names are letters, digits and _, got "${bad}"`);
}

/**
 * `field=value` pairs as edits: the value as JSON when it reads as JSON
 * (numbers, null, booleans, quoted strings), else as text.
 *
 * @example
 * parseEdits(["order_id=ORD-1234", "amount=12.5"]); // { order_id: "ORD-1234", amount: 12.5 }
 */
export function parseEdits(pairs: readonly string[]): Record<string, unknown> {
  const edits: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    const field = eq > 0 ? pair.slice(0, eq).trim() : "";
    if (!FIELD_NAME.test(field)) throw new SluiceError(`expected field=value with a field name of letters, digits and _, got "${pair}"`);
    const text = pair.slice(eq + 1);
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {
      // Plain text.
    }
    edits[field] = value;
  }
  return edits;
}

/** Who decides when nobody says: the OS user running sluice. */
export function defaultReviewer(): string {
  try {
    return userInfo().username || "unknown";
  } catch {
    return "unknown";
  }
}
