import { isLlmStage, type LlmStage } from "../core/types.ts";
import { sendBatches, useBatch } from "./batch.ts";
import { computeLocal, gate } from "./compute.ts";
import { whenCollected, type ChunkHooks, type Flush, type Sent } from "./hooks.ts";
import type { InflightAnswers } from "./inflight.ts";
import type { RunContext, StagePlan } from "./context.ts";
import { loadInputs, type LoadedInput } from "./inputs.ts";
import { buildRequest, customIdFor, endpointOf, providerNameOf, requestHash } from "./llm-call.ts";
import { persistResults } from "./persist.ts";
import { executeRealtime } from "./realtime.ts";
import type { Provider } from "../providers/types.ts";
import { failed, type ItemResult } from "./results.ts";
import { answerFromCache, claimOrAwait, followerResult, leadersAndFollowers, reuseOutputs, type Call, type Pending, type StoredOutputs } from "./reuse.ts";

export type { ChunkHooks } from "./hooks.ts";

/**
 * Execute one stage for a chunk of claimed items: gate, reuse, compute, write.
 * Every runner's work goes through here; it is the only implementation of
 * stage execution.
 */
export async function executeChunk(ctx: RunContext, stage: StagePlan, itemIds: string[], hooks: ChunkHooks): Promise<ItemResult[]> {
  // The chunk's inputs are let go of once its batches are out: only what collecting them needs waits for them.
  return whenCollected(startChunk(ctx, stage, itemIds, hooks));
}

async function startChunk(ctx: RunContext, stage: StagePlan, itemIds: string[], hooks: ChunkHooks): Promise<Sent> {
  return executeLoaded(ctx, stage, itemIds, await loadInputs(ctx, stage, itemIds), hooks);
}

/**
 * `executeChunk` for inputs already in memory (a chunk going on from the
 * stage before, in the same process). With `insert`, the stage's work rows do
 * not exist yet and are inserted with the results (a later stage of a
 * segment). `dropped` lists the items whose results were not written (a lost
 * claim, or a row another worker had already recorded); `replaced`, those
 * whose new output met a different one stored first. With `stored` (the
 * stage's outputs already read, see `storedOutputs`), the reuse rule is
 * checked against those, and reused results carry their output's value and
 * hash, so the next stage's inputs can be built without reading them back.
 * With provider batches still out, `later` collects them (see `Sent`).
 */
export async function executeLoaded(
  ctx: RunContext,
  stage: StagePlan,
  itemIds: string[],
  inputs: Map<string, LoadedInput>,
  hooks: ChunkHooks,
  { insert = false, stored }: { insert?: boolean; stored?: StoredOutputs } = {},
): Promise<Sent & { dropped: Set<string>; replaced: Set<string> }> {
  const def = ctx.pipeline.stages[stage.index]!;
  const dropped = new Set<string>();
  const replaced = new Set<string>();
  const write: Flush = async (results) => {
    const written = await persistResults(ctx, stage, results, { insert });
    // Answers now in the request cache: chunks that read it from here on find them there.
    hooks.inflight?.retire(results.flatMap((r) => (r.cache ? [r.cache.requestHash] : [])));
    for (const id of written.dropped) dropped.add(id);
    for (const id of written.replaced) replaced.add(id);
    hooks.onPersisted?.(results);
  };
  const done: ItemResult[] = [];
  const pending: Pending[] = [];
  for (const itemId of itemIds) {
    const loaded = inputs.get(itemId);
    const stopped = loaded ? gate(def, itemId, loaded.input) : failed(itemId, undefined, "deterministic", "item row missing from the run (store inconsistency)");
    if (stopped) done.push(stopped);
    else pending.push({ itemId, loaded: loaded! });
  }

  const { reused, toCompute } = await reuseOutputs(ctx, stage, pending, stored);
  done.push(...reused);

  if (!isLlmStage(def)) {
    for (const p of toCompute) done.push(await computeLocal(def, p.loaded));
    await write(done);
    return { results: done, dropped, replaced };
  }
  return { ...(await executeLlm(ctx, stage, def, toCompute, done, hooks, write)), dropped, replaced };
}

/** A model stage: the request cache, then one call per distinct request (realtime, or a provider batch). */
async function executeLlm(ctx: RunContext, stage: StagePlan, def: LlmStage, toCompute: Pending[], done: ItemResult[], hooks: ChunkHooks, write: Flush): Promise<Sent> {
  const providerName = providerNameOf(ctx, def);
  const provider = ctx.providers.get(providerName);
  const endpoint = endpointOf(ctx, providerName);
  const requests: Call[] = toCompute.map((p) => {
    const request = buildRequest(def, p.loaded.input, customIdFor(stage, p.itemId));
    return { ...p, request, hash: requestHash(endpoint, request) };
  });
  // Answers other chunks write from now on stay in flight for this chunk until it ends.
  const inflight = hooks.inflight;
  if (!inflight) return callOrReuse(ctx, stage, def, provider, providerName, requests, done, hooks, write);
  const entered = inflight.enter();
  let sent: Sent;
  try {
    sent = await callOrReuse(ctx, stage, def, provider, providerName, requests, done, hooks, write);
  } catch (err) {
    inflight.leave(entered);
    throw err;
  }
  if (!sent.later) {
    inflight.leave(entered);
    return sent;
  }
  return { results: sent.results, later: leavingAfter(inflight, entered, sent.later) };
}

/** `later`, then the chunk leaves the stage's answers in flight. */
function leavingAfter(inflight: InflightAnswers, entered: number, later: () => Promise<ItemResult[]>): () => Promise<ItemResult[]> {
  return async () => {
    try {
      return await later();
    } finally {
      inflight.leave(entered);
    }
  };
}

/** The request cache, identical requests (in the chunk, in flight elsewhere, claimed by another process), then the calls. */
async function callOrReuse(ctx: RunContext, stage: StagePlan, def: LlmStage, provider: Provider, providerName: string, requests: Call[], done: ItemResult[], hooks: ChunkHooks, write: Flush): Promise<Sent> {
  const { answered, calls } = await answerFromCache(ctx, def, requests);
  done.push(...answered);
  await write(done);

  const { leaders, followers } = leadersAndFollowers(calls);
  const unique = [...leaders.values()];
  const batch = await useBatch(ctx, stage, def, provider, unique.length, endpointOf(ctx, providerName));
  const led = await claimOrAwait(ctx, def, unique, write, async (mine) =>
    batch ? sendBatches(ctx, stage, def, providerName, provider, mine, hooks, write) : { results: await executeRealtime(ctx, def, providerName, provider, mine, hooks, write) },
  );
  const leaderOf = new Map([...leaders].map(([hash, call]) => [hash, call.itemId]));
  if (!led.later) return { results: [...done, ...led.results, ...(await answerFollowers(def, followers, leaderOf, led.results, write))] };
  return { results: [...done, ...led.results], later: followingLeaders(def, followers, leaderOf, led, write) };
}

/** The followers' results from their leaders' (written). */
async function answerFollowers(def: LlmStage, followers: Call[], leaderOf: Map<string, string>, led: ItemResult[], write: Flush): Promise<ItemResult[]> {
  const byItem = new Map(led.map((r) => [r.itemId, r]));
  const copies = followers.map((f) => followerResult(def, f, byItem.get(leaderOf.get(f.hash)!)));
  await write(copies);
  return copies;
}

/** `led.later`, then the followers' results from their leaders'. */
function followingLeaders(def: LlmStage, followers: Call[], leaderOf: Map<string, string>, led: Sent, write: Flush): () => Promise<ItemResult[]> {
  return async () => {
    const rest = await led.later!();
    return [...rest, ...(await answerFollowers(def, followers, leaderOf, [...led.results, ...rest], write))];
  };
}
