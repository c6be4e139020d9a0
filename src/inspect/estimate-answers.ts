/**
 * What `estimate` knows of a model stage's answers and calls: output tokens,
 * repairs, the tokenizer's fit against what was billed, realtime or batch,
 * and what the store already holds (outputs, cached answers).
 */
import type { LlmStage } from "../core/types.ts";
import type { RunContext, StagePlan } from "../engine/context.ts";
import { decideMode, type ModeDecision } from "../engine/deadline.ts";
import type { CompletionResult } from "../providers/types.ts";
import { cachedResponses } from "../store/cache.ts";
import type { Database } from "../store/database.ts";
import { outputsOfItems } from "../store/outputs.ts";
import { billedInputTokens, type AnswerStats } from "../store/spend.ts";
import { rate, type PriceMode, type Range } from "./estimate-ranges.ts";

export const LOOKUP_BATCH = 1000;
/** Input tokens counted here against what a provider bills, when no request of this input was billed before. */
export const TOKENIZER_MARGIN = 0.05;
/** Output tokens per answer: observed mean ± its standard error, or without observations up to `maxTokens`. */
export function outputTokens(def: LlmStage, stats: AnswerStats, z: number): Range {
  if (stats.answers > 0) {
    const se = stats.answers > 1 ? stats.sd_output / Math.sqrt(stats.answers) : stats.mean_output;
    return { low: Math.max(1, stats.mean_output - z * se), mid: stats.mean_output, high: stats.mean_output + z * se };
  }
  const cap = def.params?.maxTokens ?? 1024;
  return { low: Math.min(cap, 16), mid: cap / 2, high: cap };
}

/** Paid attempts per item called: 1 plus the repair rate seen before (up to one repair each without observations). */
export function attemptsPerCall(stats: AnswerStats, z: number): Range {
  if (stats.calls === 0) return { low: 1, mid: 1, high: 2 };
  const extra = rate(Math.min(stats.answers - stats.calls, stats.calls), stats.calls, z);
  return { low: 1 + extra.low, mid: 1 + extra.mid, high: 1 + extra.high };
}

/** Billed input tokens over tokens counted here, for requests billed before; ±5% when there are none. */
export async function tokenizerFit(db: Database, requests: { hash: string; tokens: number }[], z: number): Promise<Range & { pairs: number }> {
  const billed = new Map<string, number>();
  const hashes = [...new Set(requests.map((r) => r.hash))];
  for (let i = 0; i < hashes.length; i += LOOKUP_BATCH) {
    for (const [h, t] of await billedInputTokens(db, hashes.slice(i, i + LOOKUP_BATCH))) billed.set(h, t);
  }
  const ratios: number[] = [];
  const seen = new Set<string>();
  for (const r of requests) {
    const b = billed.get(r.hash);
    if (b === undefined || r.tokens <= 0 || seen.has(r.hash)) continue;
    seen.add(r.hash);
    ratios.push(b / r.tokens);
  }
  if (ratios.length < 2) return { low: 1 - TOKENIZER_MARGIN, mid: 1, high: 1 + TOKENIZER_MARGIN, pairs: 0 };
  const mean = ratios.reduce((s, x) => s + x, 0) / ratios.length;
  const sd = Math.sqrt(ratios.reduce((s, x) => s + (x - mean) ** 2, 0) / (ratios.length - 1));
  // The spread of single requests, not of the mean: the requests still to pay for are others.
  const half = Math.max(0.01, z * sd / Math.sqrt(Math.min(ratios.length, 30)));
  return { low: mean - half, mid: mean, high: mean + half, pairs: ratios.length };
}

/**
 * Whether the engine calls the provider's batch API for this stage, at each
 * end of the range, and, for an `auto` stage, what it would choose and why:
 * `batch` stages use it when the provider has one; `auto` stages decide as
 * `engine/deadline.ts` does when a chunk is about to make its calls (enough
 * calls in the first chunk, and with a deadline, the provider's recent batch
 * turnaround against the time before the batch would be cut), the run taken
 * to start now. `deadlineAllows`: a batch would come back in time (or there is
 * no deadline), however many calls there are.
 */
export function hasBatchApi(ctx: RunContext, providerName: string): boolean {
  try {
    return Boolean(ctx.providers.get(providerName).batch);
  } catch {
    return false;
  }
}

export interface StageMode {
  low: PriceMode;
  mid: PriceMode;
  high: PriceMode;
  /** `auto` stages: the mode the engine would choose for the midpoint's calls, and why (as a run records it). */
  auto?: ModeDecision;
  /** A batch is possible for this stage and the deadline leaves it room. */
  deadlineAllows: boolean;
}

export async function modeOf(ctx: RunContext, def: LlmStage, providerName: string, endpoint: string, calls: Range, reach: Range): Promise<StageMode> {
  const hasBatch = hasBatchApi(ctx, providerName);
  const fixed = (m: PriceMode, deadlineAllows: boolean): StageMode => ({ low: m, mid: m, high: m, deadlineAllows });
  if (!hasBatch || !def.mode || def.mode === "realtime") return fixed("realtime", false);
  if (def.mode === "batch") return fixed("batch", true);
  const inFirstChunk = (c: number, r: number) => Math.round(r > ctx.options.batchChunkSize ? (c * ctx.options.batchChunkSize) / r : c);
  const at = (c: number, r: number) => decideMode(ctx, def, endpoint, inFirstChunk(c, r));
  const [low, mid, high] = [await at(calls.high, reach.high), await at(calls.mid, reach.mid), await at(calls.low, reach.low)];
  // Enough calls for a batch, whatever this input holds: what the deadline alone says.
  const enough = await decideMode(ctx, def, endpoint, Math.max(ctx.options.autoBatchMinItems, inFirstChunk(calls.mid, reach.mid)));
  return { low: low.mode, mid: mid.mode, high: high.mode, auto: mid, deadlineAllows: enough.mode === "batch" };
}

export async function storedFor(db: Database, pipelineId: string, stage: StagePlan, itemIds: string[]) {
  const byItem = new Map<string, { inputHash: string; status: string; value: unknown; hash: string }[]>();
  for (let i = 0; i < itemIds.length; i += LOOKUP_BATCH) {
    for (const row of await outputsOfItems(db, pipelineId, [stage], itemIds.slice(i, i + LOOKUP_BATCH))) {
      let list = byItem.get(row.itemId);
      if (!list) byItem.set(row.itemId, (list = []));
      list.push({ inputHash: row.inputHash, status: row.status, value: row.value, hash: row.hash });
    }
  }
  return byItem;
}

export async function cachedIn(db: Database, hashes: string[]): Promise<Map<string, CompletionResult>> {
  const found = new Map<string, CompletionResult>();
  const unique = [...new Set(hashes)];
  for (let i = 0; i < unique.length; i += LOOKUP_BATCH) {
    for (const [h, r] of await cachedResponses<CompletionResult>(db, unique.slice(i, i + LOOKUP_BATCH))) found.set(h, r);
  }
  return found;
}
