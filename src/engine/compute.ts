import { sha256 } from "../core/hash.ts";
import { compileSchema } from "../core/schema.ts";
import { errorMessage } from "../core/errors.ts";
import type { ItemStatus } from "../core/status.ts";
import type { CommitStage, StageDef, StageInput, ValidationVerdict } from "../core/types.ts";
import type { LoadedInput } from "./inputs.ts";
import { computed, failed, gatedOut, type ItemResult } from "./results.ts";

/**
 * Stages without a model call: a function (`filter`, `map`, `validate`) or a
 * commit row. What they compute is recorded like any output, so a rerun
 * reuses it as it reuses a model's.
 */

/** The stage's gate for one item: undefined when the item goes on, else its result (kept out, or the gate threw). */
export function gate(def: StageDef, itemId: string, input: StageInput): ItemResult | undefined {
  if (!def.when) return undefined;
  try {
    return def.when(input) ? undefined : gatedOut(itemId);
  } catch (err) {
    return failed(itemId, undefined, "deterministic", `gate of stage ${def.id} threw: ${errorMessage(err)}`);
  }
}

/** The target row a commit stage writes for one item (its output too). */
export function computeCommit(def: CommitStage, loaded: LoadedInput): ItemResult {
  const itemId = loaded.input.itemId;
  let row: Record<string, unknown>;
  try {
    row = def.row(loaded.input);
  } catch (err) {
    return failed(itemId, loaded.inputHash, "deterministic", `commit row() threw: ${errorMessage(err)}`);
  }
  const key = row[def.target.key];
  if (key === undefined || key === null || key === "") {
    return failed(itemId, loaded.inputHash, "deterministic", `commit row has no "${def.target.key}" (target.key)`);
  }
  // A typed target takes only rows that fit its columns: one that does not is this item's failure, not the group's.
  if (def.target.columns) {
    const checked = compileSchema(def.target.columns)(row);
    if (!checked.ok) return failed(itemId, loaded.inputHash, "deterministic", `commit row does not fit the columns of ${def.target.table}: ${checked.errors.join("; ")}`);
  }
  const targetRow = { key: String(key), itemId, data: row };
  // The audit sample goes to review first; its row is written once a person approves it.
  if (def.audit && inAuditSample(itemId, def.audit.sample)) {
    return computed(itemId, loaded.inputHash, "needs_review", row, { targetRow, errorMessage: `audit sample: ${Math.round(def.audit.sample * 1000) / 10}% of the items committed are checked by a person` });
  }
  return computed(itemId, loaded.inputHash, "committed", row, { targetRow });
}

/** Whether an item is in an audit sample of this share: by a hash of its id, so the same items every run. */
export function inAuditSample(itemId: string, share: number): boolean {
  return parseInt(sha256(`audit\u0000${itemId}`).slice(0, 8), 16) / 0x1_0000_0000 < share;
}

const VERDICT_STATUS: Record<ValidationVerdict["status"], ItemStatus> = {
  valid: "validated",
  review: "needs_review",
  invalid: "failed_terminal",
};

export async function computeLocal(def: StageDef, loaded: LoadedInput): Promise<ItemResult> {
  const itemId = loaded.input.itemId;
  if (def.kind === "commit") return computeCommit(def, loaded);
  let value: unknown;
  try {
    value = await (def as { run: (i: StageInput) => unknown }).run(loaded.input);
  } catch (err) {
    return failed(itemId, loaded.inputHash, "deterministic", `stage ${def.id} threw: ${errorMessage(err)}`);
  }
  let status: ItemStatus = "succeeded_unvalidated";
  let reason: string | undefined;
  if (def.kind === "validate") {
    const verdict = value as ValidationVerdict;
    status = VERDICT_STATUS[verdict?.status] ?? "failed_terminal";
    if (verdict?.status !== "valid") reason = (verdict as { reasons?: string[] })?.reasons?.join("; ") ?? "validator returned no verdict";
  } else if (def.kind === "filter" && (value as { keep?: boolean })?.keep === false) {
    status = "gated_out";
  }
  return computed(itemId, loaded.inputHash, status, value, {
    errorClass: status === "failed_terminal" || status === "needs_review" ? "quality" : undefined,
    errorMessage: reason,
  });
}
