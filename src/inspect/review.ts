import { userInfo } from "node:os";
import { SluiceError } from "../core/errors.ts";
import type { Database } from "../store/database.ts";
import { recordDecisions, reviewQueue, type Decision, type QueueRow } from "../store/reviews.ts";
import { requireRun } from "../store/runs.ts";

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
