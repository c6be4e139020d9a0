import { deepFreeze, storedForm } from "../../core/json.ts";
import { advances } from "../../core/status.ts";
import { isLlmStage } from "../../core/types.ts";
import type { RunContext, StagePlan } from "../context.ts";
import { executeLoaded, type ChunkHooks } from "../execute.ts";
import { whenCollected } from "../hooks.ts";
import { loadChunkItems, loadInputs, stageInput, type ChunkItem, type LoadedInput } from "../inputs.ts";
import { providerNameOf } from "../llm-call.ts";
import { carriedOutput } from "../results.ts";
import { storedOutputs, type StoredOutputs } from "../reuse.ts";
import { frontiersFor } from "./graph.ts";

/**
 * Segments: consecutive stages that a chunk of items goes through together,
 * in memory, one stage after the other. A chunk is claimed at the segment's
 * first stage; the items that advance go on to the next stage with the inputs
 * the chunk already holds, instead of being queued and read back. Every stage
 * writes its own results (outputs, attempts, work rows) as it finishes them;
 * a later stage's work rows are inserted with its results, so an item in
 * flight there has no row yet.
 *
 * What chunks leave unfinished (a retry waiting its turn, a chunk cut short by
 * a crash) is picked up afterwards by each later stage on its own: queued
 * from the stage before, claimed and executed as usual. On a shared Postgres
 * that happens only once no process is still inside the segment's chunks
 * (see `barrier.ts`), so a later stage never queues an item another
 * process is carrying.
 *
 * A stage that sends its items to a provider's batch API is a segment of its
 * own: it takes the whole stage at once, and answers come back hours later.
 * Where the stages branch (see `graph.ts`), a segment is a chain: each of its
 * stages after the first goes on only from the one before it, which feeds no
 * other stage. A stage where branches part or meet starts a segment.
 */
export function segmentsOf(ctx: RunContext, stages: readonly StagePlan[]): StagePlan[][] {
  const frontiers = frontiersFor(ctx.plan);
  // How many of these stages each stage feeds (has in their frontier).
  const feeds = new Map<number, number>();
  for (const s of stages) for (const f of frontiers[s.index]!) feeds.set(f, (feeds.get(f) ?? 0) + 1);
  const segments: StagePlan[][] = [];
  let current: StagePlan[] = [];
  for (const stage of stages) {
    if (usesBatchApi(ctx, stage)) {
      if (current.length) segments.push(current);
      segments.push([stage]);
      current = [];
      continue;
    }
    const prev = current[current.length - 1];
    const f = frontiers[stage.index]!;
    // A chain: the stage goes on only from the one before it, and that one feeds no other.
    if (prev && f.length === 1 && f[0] === prev.index && feeds.get(prev.index) === 1) {
      current.push(stage);
    } else {
      if (current.length) segments.push(current);
      current = [stage];
    }
  }
  if (current.length) segments.push(current);
  return segments;
}

/** True for an LLM stage whose items go to its provider's batch API (mode `batch`, or `auto`), when that provider has one. */
export function usesBatchApi(ctx: RunContext, stage: StagePlan): boolean {
  const def = ctx.pipeline.stages[stage.index]!;
  return isLlmStage(def) && (def.mode === "batch" || def.mode === "auto") && Boolean(ctx.providers.get(providerNameOf(ctx, def)).batch);
}

/** A chunk on its way through a segment. */
export interface SegmentChunk {
  /** Item rows and the outputs computed (or reused) so far, by item id. */
  items: Map<string, ChunkItem>;
  /** The items to execute at `segment[at]`. */
  ids: string[];
  /** Position in the segment of the next stage to execute. */
  at: number;
  /** Items whose output of some stage the chunk does not hold: later stages read them back from the store. */
  unheld: Set<string>;
  /** Outputs already stored for the segment's stage versions and these items (the reuse rule's candidates), by stage id. */
  stored: Map<string, StoredOutputs>;
}

/** Load a chunk claimed at the segment's first stage, with the outputs of earlier stages that any stage of the segment reads. */
export async function loadSegmentChunk(ctx: RunContext, segment: readonly StagePlan[], ids: string[]): Promise<SegmentChunk> {
  const first = segment[0]!.index;
  const reads = [...new Set(segment.flatMap((s) => s.reads).filter((r) => r < first))].sort((a, b) => a - b);
  // One read for the reuse rule of every stage of the segment: on a first run it finds nothing, in one round trip instead of one per stage.
  const [items, stored] = await Promise.all([loadChunkItems(ctx, reads, ids), storedOutputs(ctx, segment, ids)]);
  return { items, ids, at: 0, unheld: new Set(), stored };
}

/**
 * Execute the chunk's stages from `chunk.at` up to (not including) `until`,
 * each for the items the one before advanced. `hooks` are per stage of the
 * segment.
 */
export async function advanceSegmentChunk(ctx: RunContext, segment: readonly StagePlan[], chunk: SegmentChunk, hooks: readonly ChunkHooks[], until = segment.length): Promise<void> {
  while (chunk.at < until && chunk.ids.length > 0) {
    if (ctx.signal?.aborted) throw ctx.signal.reason;
    const stage = segment[chunk.at]!;
    const last = chunk.at === segment.length - 1;
    const inputs = await inputsFor(ctx, stage, chunk);
    const ran = await executeLoaded(ctx, stage, chunk.ids, inputs, hooks[chunk.at]!, { insert: chunk.at > 0, stored: chunk.stored.get(stage.id) });
    const { dropped, replaced } = ran;
    const results = await whenCollected(ran);
    const next: string[] = [];
    for (const result of results) {
      const held = chunk.items.get(result.itemId);
      if (!held) continue;
      // Not written (another worker has it), or not going on: it leaves the chunk.
      if (last || dropped.has(result.itemId) || !advances(result.status)) {
        chunk.items.delete(result.itemId);
        continue;
      }
      // The output recorded may be one another run stored first: then it is read back.
      const carried = replaced.has(result.itemId) ? undefined : carriedOutput(result);
      if (carried) {
        // What a read from the store would give the next stage: jsonb's form, frozen.
        held.outputs[stage.id] = deepFreeze(storedForm(carried.value));
        held.hashes[stage.id] = carried.hash;
      } else {
        chunk.unheld.add(result.itemId);
      }
      next.push(result.itemId);
    }
    chunk.ids = next.sort();
    chunk.at++;
  }
}

/** Inputs of `stage` from the chunk; items it does not fully hold are read from the store. */
async function inputsFor(ctx: RunContext, stage: StagePlan, chunk: SegmentChunk): Promise<Map<string, LoadedInput>> {
  const inputs = new Map<string, LoadedInput>();
  const reread: string[] = [];
  for (const id of chunk.ids) {
    const held = chunk.items.get(id);
    if (!held || chunk.unheld.has(id)) reread.push(id);
    else inputs.set(id, stageInput(ctx, stage, id, held));
  }
  if (reread.length) for (const [id, loaded] of await loadInputs(ctx, stage, reread)) inputs.set(id, loaded);
  return inputs;
}

/** Index in the segment of its first LLM stage (the segment's length if it has none). */
export function firstModelStage(ctx: RunContext, segment: readonly StagePlan[]): number {
  const i = segment.findIndex((s) => isLlmStage(ctx.pipeline.stages[s.index]!));
  return i < 0 ? segment.length : i;
}
