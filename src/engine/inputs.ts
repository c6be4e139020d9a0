import { sha256, stableStringify } from "../core/hash.ts";
import { deepFreeze } from "../core/json.ts";
import { isLlmStage, type StageInput } from "../core/types.ts";
import { upstreamOutputs } from "../store/outputs.ts";
import { runItems } from "../store/runs.ts";
import type { RunContext, StagePlan } from "./context.ts";
import { endpointOf } from "./llm-call.ts";

export interface LoadedInput {
  input: StageInput;
  /** Hash of the item and the hashes of the upstream outputs the stage reads. */
  inputHash: string;
}

/** An item as a chunk carries it from stage to stage: its row, and the outputs (and their hashes) of the stages it went through, by stage id. All frozen, in the form the store gives back. */
export interface ChunkItem {
  item: unknown;
  contentHash: string;
  outputs: Record<string, unknown>;
  hashes: Record<string, string>;
}

/**
 * Read items and the outputs of the stages `reads` (indexes) from this run's
 * rows. Two queries per chunk.
 */
export async function loadChunkItems(ctx: RunContext, reads: readonly number[], itemIds: string[]): Promise<Map<string, ChunkItem>> {
  const items = await runItems(ctx.db, ctx.runId, itemIds);
  const upstream = await upstreamOutputs(ctx.db, ctx.runId, reads, itemIds);
  const result = new Map<string, ChunkItem>();
  for (const row of items) result.set(row.item_id, { item: deepFreeze(row.data), contentHash: row.content_hash, outputs: {}, hashes: {} });
  for (const row of upstream) {
    const entry = result.get(row.item_id);
    if (!entry) continue;
    entry.outputs[row.stage_id] = deepFreeze(row.output);
    entry.hashes[row.stage_id] = row.output_hash;
  }
  return result;
}

/**
 * What `stage` sees of an item: the item row and the outputs of the upstream
 * stages it reads (no others), and the input hash they make.
 */
export function stageInput(ctx: RunContext, stage: StagePlan, itemId: string, chunkItem: ChunkItem): LoadedInput {
  const outputs: Record<string, unknown> = {};
  const hashes: Record<string, string> = {};
  for (const r of stage.reads) {
    const id = ctx.plan[r]!.id;
    if (id in chunkItem.hashes) {
      outputs[id] = chunkItem.outputs[id];
      hashes[id] = chunkItem.hashes[id]!;
    }
  }
  const def = ctx.pipeline.stages[stage.index]!;
  // For an LLM stage, which endpoint answers is part of its input: a simulated
  // answer must never be reused once a real key is set.
  const endpoint = isLlmStage(def) ? endpointOf(ctx, def.provider ?? ctx.providers.defaultProvider) : undefined;
  // Read-only, whether the values were read from the store or carried by a
  // chunk from the stage before: a stage that changed its input would
  // otherwise change what the stages after it see, in one case and not the other.
  return {
    input: Object.freeze({ itemId, item: chunkItem.item as never, outputs: Object.freeze(outputs) }),
    inputHash: inputHashOf(itemId, chunkItem.contentHash, hashes, endpoint),
  };
}

/**
 * `hashValue({ itemId, content, upstream, endpoint }, 32)`, its text built
 * directly (the keys in sorted order) instead of through a sorted copy: it is
 * computed for every item at every stage.
 */
export function inputHashOf(itemId: string, content: string, upstream: Record<string, string>, endpoint: string | undefined): string {
  const text = `{"content":${JSON.stringify(content)},${endpoint === undefined ? "" : `"endpoint":${JSON.stringify(endpoint)},`}"itemId":${JSON.stringify(itemId)},"upstream":${stableStringify(upstream)}}`;
  return sha256(text).slice(0, 32);
}

/**
 * Load what `stage` sees for each item: the item row and the outputs of the
 * upstream stages it reads, from this run's work rows.
 */
export async function loadInputs(ctx: RunContext, stage: StagePlan, itemIds: string[]): Promise<Map<string, LoadedInput>> {
  const items = await loadChunkItems(ctx, stage.reads, itemIds);
  const result = new Map<string, LoadedInput>();
  for (const [itemId, chunkItem] of items) result.set(itemId, stageInput(ctx, stage, itemId, chunkItem));
  return result;
}
