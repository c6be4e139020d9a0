import type { ItemStatus } from "../core/status.ts";
import type { CommitStage, LlmStage } from "../core/types.ts";
import type { CompletionRequest, CompletionResult } from "../providers/types.ts";
import { cachedResponses, claimRequests, releaseRequests } from "../store/cache.ts";
import { outputsForInputs, outputsOfItems } from "../store/outputs.ts";
import { computeCommit } from "./compute.ts";
import type { RunContext, StagePlan } from "./context.ts";
import type { LoadedInput } from "./inputs.ts";
import type { Flush, Sent } from "./hooks.ts";
import { checkCompletion } from "./llm-call.ts";
import { sleep } from "./retry.ts";
import { failed, fromAnswer, reusedOutput, type ItemResult } from "./results.ts";

/**
 * The one rule of reuse: nothing already paid for is paid for again. Before a
 * stage computes an item, in this order:
 *
 * 1. **Stage outputs** (`reuseOutputs`). An output stored for the stage's
 *    version and the item's input hash (the item plus the hashes of the
 *    upstream outputs it reads) is the item's result, at no cost. This is
 *    what makes a rerun after a prompt change pay only for what changed: a
 *    stage whose inputs did not change finds every output, and a changed
 *    output changes the input hash of exactly the stages that read it.
 * 2. **The request cache** (`answerFromCache`), for model stages: an
 *    identical request (model, messages, schema, parameters, answering
 *    endpoint) answered before, for any item, stage or run, is answered
 *    again from the store, checked against this item's own rule.
 * 3. **Identical requests in flight**: among requests about to be sent, one
 *    per request hash goes out; the others wait for its answer. Within a
 *    chunk (`leadersAndFollowers`), across a stage's chunks in one process
 *    (the in-flight map in `realtime.ts`), and across processes sharing a run
 *    on Postgres (`claimOrAwait`: a claim per request hash in the store).
 *
 * Stage outputs come first because they need no request to be built: a
 * rerun's unchanged stages render no prompt at all. The request cache comes
 * second because its key is the request, which a prompt change alters.
 */

/** An item waiting for its stage's result. */
export interface Pending {
  itemId: string;
  loaded: LoadedInput;
}

/** Outputs stored for a stage version, by item: every input hash an item has one for. */
export type StoredOutputs = Map<string, { id: number; inputHash: string; status: ItemStatus; value: unknown; hash: string }[]>;

/**
 * Every output stored for the given stages' versions and items, read at once
 * (a chunk about to go through those stages): by stage id, then by item. On
 * a first run it finds nothing, in one round trip instead of one per stage.
 */
export async function storedOutputs(ctx: RunContext, stages: readonly StagePlan[], itemIds: string[]): Promise<Map<string, StoredOutputs>> {
  const byStage = new Map<string, StoredOutputs>(stages.map((s) => [s.id, new Map()]));
  for (const row of await outputsOfItems(ctx.db, ctx.pipeline.id, stages, itemIds)) {
    const forStage = byStage.get(row.stageId)!;
    let list = forStage.get(row.itemId);
    if (!list) forStage.set(row.itemId, (list = []));
    list.push({ id: row.id, inputHash: row.inputHash, status: row.status as ItemStatus, value: row.value, hash: row.hash });
  }
  return byStage;
}

/**
 * Rule 1 for a chunk: the items whose output is stored get it as their
 * result; the others are left to compute. With `stored` (read beforehand by
 * `storedOutputs`), reused results carry the output's value and hash, so the
 * next stage of a segment needs no read. A commit is re-applied even when its
 * output is reused: the upsert is a no-op for unchanged rows and restores a
 * row that was withdrawn.
 */
export async function reuseOutputs(ctx: RunContext, stage: StagePlan, pending: Pending[], stored?: StoredOutputs): Promise<{ reused: ItemResult[]; toCompute: Pending[] }> {
  const def = ctx.pipeline.stages[stage.index]!;
  const reused: ItemResult[] = [];
  const toCompute: Pending[] = [];
  const found = stored ? undefined : await outputsForInputs(ctx.db, { pipeline: ctx.pipeline.id, stageId: stage.id, version: stage.version }, new Map(pending.map((p) => [p.itemId, p.loaded.inputHash])));
  for (const p of pending) {
    let hit: { id: number; status: string } | undefined;
    let ref: { id: number; value?: unknown; hash?: string } | undefined;
    if (stored) {
      const match = stored.get(p.itemId)?.find((o) => o.inputHash === p.loaded.inputHash);
      if (match) [hit, ref] = [match, { id: match.id, value: match.value, hash: match.hash }];
    } else {
      hit = found!.get(p.itemId);
      if (hit) ref = { id: hit.id };
    }
    if (!hit || !ref) {
      toCompute.push(p);
    } else if (def.kind !== "commit") {
      reused.push(reusedOutput(p.itemId, p.loaded.inputHash, hit.status as ItemStatus, ref));
    } else {
      const again = computeCommit(def as CommitStage, p.loaded);
      reused.push({ ...again, reused: true, stored: { id: hit.id }, output: undefined });
    }
  }
  return { reused, toCompute };
}

/** A model request about to be sent for an item. */
export interface Call extends Pending {
  request: CompletionRequest;
  /** The request hash: the request cache's key. */
  hash: string;
}

/**
 * Rule 2: requests answered before are answered from the request cache. An
 * answer that fails this item's check for a reason a new call could fix
 * (schema, refusal) is not used: the item is called for.
 */
export async function answerFromCache(ctx: RunContext, def: LlmStage, requests: Call[]): Promise<{ answered: ItemResult[]; calls: Call[] }> {
  return judgeAnswers(def, requests, await cachedResponses<CompletionResult>(ctx.db, [...new Set(requests.map((r) => r.hash))]));
}

/**
 * Rule 3 within a chunk: one request per distinct request hash (duplicate
 * items under different ids); the followers wait for their leader's answer.
 */
export function leadersAndFollowers(calls: Call[]): { leaders: Map<string, Call>; followers: Call[] } {
  const leaders = new Map<string, Call>();
  const followers: Call[] = [];
  for (const r of calls) {
    if (leaders.has(r.hash)) followers.push(r);
    else leaders.set(r.hash, r);
  }
  return { leaders, followers };
}

/** A follower's result, from its leader's: the same answer, checked against the follower's own rule. */
export function followerResult(def: LlmStage, follower: Call, lead: ItemResult | undefined): ItemResult {
  const { itemId } = follower;
  const inputHash = follower.loaded.inputHash;
  // The leader was not answered here (its claim was taken over before its
  // batch went out): this item waits its turn, and by then the answer is
  // in the request cache or the leader's new owner has it.
  if (!lead) return failed(itemId, inputHash, "transient", "its identical request was answered elsewhere; retried", { status: "failed_retryable" });
  const response = lead.answer ?? (lead.cache?.response as CompletionResult | undefined);
  if (!response) {
    // No answer to share: a failure is shared as it is; anything else is retried on its own.
    if (lead.status === "failed_terminal" || lead.status === "needs_review") return failed(itemId, inputHash, lead.errorClass, lead.errorMessage, { status: lead.status });
    return failed(itemId, inputHash, "transient", "its identical request's answer was not available here; retried", { status: "failed_retryable" });
  }
  return fromAnswer(itemId, inputHash, checkCompletion(def, follower.loaded.input, response));
}

/** How soon a worker waiting for another one's answer first looks for it again. */
const AWAIT_POLL_MS = 200;

/**
 * Rule 3 across processes sharing a run: before paying for a request, claim
 * its hash in the store. Requests won are sent (`send`, which writes their
 * results); requests another live worker is paying for right now are not
 * sent again: their answers are awaited in the request cache, and a claim
 * whose worker stops beating is taken over. Embedded PGlite has one process,
 * and the in-process checks suffice.
 */
export async function claimOrAwait(ctx: RunContext, def: LlmStage, calls: Call[], write: Flush, send: (calls: Call[]) => Promise<Sent>): Promise<Sent> {
  if (ctx.db.kind === "pglite") return send(calls);
  const results: ItemResult[] = [];
  // Collections of the batches sent, started at once: a wait here for another process's claim (a batch of
  // its own, hours perhaps) must not hold back polling ours, nor a deadline's cut of it.
  const collecting: Promise<ItemResult[]>[] = [];
  let waiting = calls;
  // A realtime answer comes in moments; a provider batch's may take hours: look less often as the wait goes on.
  let poll = AWAIT_POLL_MS;
  for (;;) {
    const { won, answers } = await claimRequests<CompletionResult>(ctx.db, waiting.map((c) => c.hash), ctx.workerId, ctx.options.leaseMs);
    // Answered meanwhile: usable for the item, or refused by its own check. An
    // answer no item can use (refused, truncated, malformed) is called for.
    const { answered, calls: unanswered } = judgeAnswers(def, waiting, answers);
    if (answered.length) {
      await write(answered);
      results.push(...answered);
    }
    const mine = unanswered.filter((c) => won.has(c.hash) || answers.has(c.hash));
    waiting = unanswered.filter((c) => !won.has(c.hash) && !answers.has(c.hash));
    if (mine.length) {
      const sent = await send(mine);
      results.push(...sent.results);
      const release = releaser(ctx, new Map(mine.map((c) => [c.itemId, c.hash])), won);
      if (sent.later) {
        const collected = releasingAfter(sent, release)();
        // Awaited with the others when the loop ends; a failure meanwhile is not an unhandled rejection.
        collected.catch(() => {});
        collecting.push(collected);
      }
      else await release(sent.results);
    }
    if (waiting.length === 0) return { results, later: collecting.length ? async () => (await Promise.all(collecting)).flat() : undefined };
    // Still being answered elsewhere: look again shortly, and take the claim over if its worker stops.
    await sleep(poll, ctx.signal);
    poll = Math.min(ctx.options.batchPollMaxMs, Math.round(poll * 1.5));
  }
}

/**
 * Give up the claims won on requests that got no answer. A written answer
 * gave its claim up with it (`results.ts`); a failed call's claim lets
 * another worker try. An answer taken from another chunk of this process
 * (`realtime.ts`) keeps the claim: that chunk gives it up when it writes the
 * answer, and given up before, another process would win it and pay again.
 */
function releaser(ctx: RunContext, hashOf: Map<string, string>, won: Set<string>): (results: ItemResult[]) => Promise<void> {
  return async (results) => {
    const answered = new Set(results.flatMap((r) => (r.cache || r.answer ? [hashOf.get(r.itemId)!] : [])));
    const unresolved = [...won].filter((h) => !answered.has(h));
    if (unresolved.length) await releaseRequests(ctx.db, unresolved, ctx.workerId);
  };
}

/** `sent.later`, then the claims of what it left unanswered given up. */
function releasingAfter(sent: Sent, release: (results: ItemResult[]) => Promise<void>): () => Promise<ItemResult[]> {
  return async () => {
    const rest = await sent.later!();
    await release([...sent.results, ...rest]);
    return rest;
  };
}

/**
 * Requests answered (usable for the item, or refused by the stage's own
 * check) and those still to call. An answer to an identical request is the
 * item's answer wherever it comes from (a leader in the chunk, a call in
 * flight, the request cache), checked against the item's own rule: one the
 * rule refuses goes to review, as it would when shared in flight, so what an
 * item gets does not depend on whether another chunk's answer was still in
 * memory. Only an answer no item can use (a refusal, a truncated or
 * malformed output) is asked for again.
 */
function judgeAnswers(def: LlmStage, requests: Call[], answers: Map<string, CompletionResult>): { answered: ItemResult[]; calls: Call[] } {
  const answered: ItemResult[] = [];
  const calls: Call[] = [];
  for (const r of requests) {
    const hit = answers.get(r.hash);
    const checked = hit && checkCompletion(def, r.loaded.input, hit);
    if (checked && (checked.ok || checked.threw || checked.rule)) answered.push(fromAnswer(r.itemId, r.loaded.inputHash, checked));
    else calls.push(r);
  }
  return { answered, calls };
}
