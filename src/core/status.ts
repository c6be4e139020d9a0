/**
 * Item status, per stage and item. `queued` and `processing` are in flight; the
 * rest are where an item can rest. `needs_review` waits for a person; their
 * decision settles it as `validated` (approved or edited: it goes on) or
 * `rejected` (it stops there). An item goes `queued` → `processing` → one
 * of the rest; `failed_retryable` items are picked up again like `queued` ones.
 */
export const ITEM_STATUSES = [
  "queued",
  "processing",
  "succeeded_unvalidated",
  "validated",
  "committed",
  "gated_out",
  "needs_review",
  "rejected",
  "failed_retryable",
  "failed_terminal",
] as const;
export type ItemStatus = (typeof ITEM_STATUSES)[number];

/**
 * Final states of an input row at the end of a run. Besides the per-stage
 * statuses: `quarantined` (bad input, never sent to a model) and `deduplicated`
 * (a row identical to an earlier row with the same id, merged into it).
 */
export const FINAL_STATES = [
  "committed",
  "validated",
  "succeeded_unvalidated",
  "gated_out",
  "needs_review",
  "rejected",
  "failed_terminal",
  "quarantined",
  "deduplicated",
] as const;
export type FinalState = (typeof FINAL_STATES)[number];

/** Statuses after which an item moves on to the next stage. */
export const ADVANCING: readonly ItemStatus[] = ["succeeded_unvalidated", "validated", "committed"];

export function advances(status: ItemStatus): boolean {
  return ADVANCING.includes(status);
}
