import type { FailureClass } from "../core/errors.ts";
import { hashValue } from "../core/hash.ts";
import type { ItemStatus } from "../core/status.ts";
import type { CompletionResult } from "../providers/types.ts";
import type { CacheEntry } from "../store/cache.ts";
import type { TargetRow } from "../store/targets.ts";
import type { AttemptRecord, Checked } from "./llm-call.ts";

/**
 * What executing one stage for one item came to, before it is written. An
 * output travels in one of two ways: `output`, a new output row to record
 * (computed now, or answered from the request cache); or `stored`, the output
 * row the reuse rule found. `answer` is the provider answer a result came
 * from, kept in memory only (duplicates of the item check it against their
 * own rule); it is never written.
 *
 * Build results with the constructors below, not by hand.
 */
export interface ItemResult {
  itemId: string;
  status: ItemStatus;
  inputHash?: string;
  reused: boolean;
  output?: NewOutput;
  stored?: StoredRef;
  errorClass?: string;
  errorMessage?: string;
  attempts: AttemptRecord[];
  targetRow?: TargetRow;
  cache?: CacheEntry;
  answer?: CompletionResult;
  /** The review decision that settled a result its stage sent to review (see `review.ts`). */
  reviewId?: number;
}

/** A new output row; `hash` (of `value`) is part of what later stages' input hashes are made of. */
export interface NewOutput {
  value: unknown;
  status: ItemStatus;
  costUsd: number;
  hash: string;
}

/** An output row already in the store; `value` and `hash` when the lookup read them. */
export interface StoredRef {
  id: number;
  value?: unknown;
  hash?: string;
}

/** The value and hash an item carries on to the next stage of a segment, when the result holds them. */
export function carriedOutput(result: ItemResult): { value: unknown; hash: string } | undefined {
  if (result.output) return result.output;
  if (result.stored?.hash !== undefined) return { value: result.stored.value, hash: result.stored.hash };
  return undefined;
}

/** A new output, hashed once here: the write records the hash and the next stage's input hash uses it. */
function newOutput(value: unknown, status: ItemStatus, costUsd: number): NewOutput {
  const v = value ?? null;
  return { value: v, status, costUsd, hash: hashValue(v, 32) };
}

/** Kept out by the stage's gate: never computed. */
export function gatedOut(itemId: string): ItemResult {
  return { itemId, status: "gated_out", reused: false, attempts: [] };
}

/**
 * A failure with nothing to record but the reason: the item is dead-lettered
 * (`failed_terminal`, the default) or queued again (`failed_retryable`).
 */
export function failed(
  itemId: string,
  inputHash: string | undefined,
  errorClass: FailureClass | string | undefined,
  errorMessage: string | undefined,
  { status = "failed_terminal", attempts = [] }: { status?: ItemStatus; attempts?: AttemptRecord[] } = {},
): ItemResult {
  return { itemId, status, inputHash, reused: false, attempts, errorClass, errorMessage };
}

/** The reuse rule found this item's output for this stage version and input: nothing is computed. */
export function reusedOutput(itemId: string, inputHash: string, status: ItemStatus, stored: StoredRef): ItemResult {
  return { itemId, status, inputHash, reused: true, attempts: [], stored };
}

/**
 * A computed output: by a function stage, by a model (with the attempts it
 * took, the cache entry to keep and the answer it came from), or taken from
 * the request cache or an identical request's answer (`reused`, at no cost).
 */
export function computed(
  itemId: string,
  inputHash: string,
  status: ItemStatus,
  value: unknown,
  more: { costUsd?: number; reused?: boolean; attempts?: AttemptRecord[]; cache?: CacheEntry; answer?: CompletionResult; errorClass?: string; errorMessage?: string; targetRow?: TargetRow } = {},
): ItemResult {
  const result: ItemResult = { itemId, status, inputHash, reused: more.reused ?? false, attempts: more.attempts ?? [], output: newOutput(value, status, more.costUsd ?? 0) };
  if (more.cache) result.cache = more.cache;
  if (more.answer) result.answer = more.answer;
  if (more.errorClass) result.errorClass = more.errorClass;
  if (more.errorMessage) result.errorMessage = more.errorMessage;
  if (more.targetRow) result.targetRow = more.targetRow;
  return result;
}

/**
 * An item answered by a response it did not pay for (the request cache, or
 * an identical request of another item), checked against the stage's own
 * schema and rule for this item: accepted at no cost, or refused as the
 * check says (`needs_review` for a business rule, else dead-lettered).
 */
export function fromAnswer(itemId: string, inputHash: string, checked: Checked, answer?: CompletionResult): ItemResult {
  if (checked.ok) return computed(itemId, inputHash, "succeeded_unvalidated", checked.value, { reused: true, answer });
  const result = failed(itemId, inputHash, checked.threw ? "deterministic" : "quality", checked.error.message, { status: checked.rule ? "needs_review" : "failed_terminal" });
  if (answer) result.answer = answer;
  return result;
}
