import { randomBytes } from "node:crypto";
import { BudgetExhaustedError, DeterministicError, errorMessage } from "../core/errors.ts";
import type { LlmStage } from "../core/types.ts";
import { CLOCK_SKEW_S, packBatches } from "../providers/batching.ts";
import type { CompletionRequest, CompletionResult, Provider } from "../providers/types.ts";
import { adoptOrphanBatches, BATCH_CUTTING, uncollectedBatchesOf, batchClaimant, batchIdsSince, batchKey, batchSubmitted, recordBatch, setBatchStatus, withdrawBatch } from "../store/batches.ts";
import { settledStageMode, settleStageMode } from "../store/runs.ts";
import type { RunContext, StagePlan } from "./context.ts";
import type { InflightAnswers } from "./inflight.ts";
import { batchCutoff, deadlineOf, decideMode } from "./deadline.ts";
import { checkCompletion, endpointOf, stageHalted } from "./llm-call.ts";
import { persistResults } from "./persist.ts";
import { failed, fromAnswer, type ItemResult } from "./results.ts";
import type { Call } from "./reuse.ts";
import { whenCollected, type ChunkHooks, type Flush, type Sent } from "./hooks.ts";
import { at, attemptsSoFar, collectBatch, cutBatch, failure, pollStatus, type BatchEntry, type BatchRow } from "./batch-collect.ts";

/**
 * Batch mode: requests go to the provider's native batch API at half price.
 * The batch id is written to the store before the first poll, and the items
 * are handed to the batch (`claimed_by = batch:<id>`), so a process that dies
 * while the batch is in flight is followed by one that polls it, never by
 * one that pays for it again. Results are reconciled by custom id; only the
 * items that failed transiently or expired are queued for another batch.
 */


/**
 * Whether an LLM stage sends these calls through the batch API. In `auto`
 * mode, the first chunk of the run to make calls decides (enough calls, and
 * room for the batch window) and the run records it: every later chunk, and
 * every other process, follows, so a few items left after a crash do not go
 * out realtime at full price.
 */
export async function useBatch(ctx: RunContext, stage: StagePlan, def: LlmStage, provider: Provider, calls: number, endpoint: string): Promise<boolean> {
  if (calls === 0) return false;
  if (def.mode === "batch") return Boolean(provider.batch);
  if (def.mode !== "auto") return false;
  // Settled by an earlier chunk (or another process): followed, without deciding again.
  const settled = await settledStageMode(ctx.db, ctx.runId, stage.id);
  if (settled) return settled === "batch";
  // Recorded too, so the run (its summary, its report) says why an auto stage went realtime.
  const decided = provider.batch ? await decideMode(ctx, def, endpoint, calls) : { mode: "realtime" as const, why: `${endpoint} has no batch API` };
  const { mode, settledHere } = await settleStageMode(ctx.db, ctx.runId, stage.id, decided.mode, decided.why);
  // Said once per run, by the chunk that settled it.
  if (settledHere) ctx.logger.info(`stage ${stage.id}: ${mode} (${decided.why})`);
  return mode === "batch";
}

/**
 * A chunk's calls in provider batches, less the requests another chunk of
 * this stage in this process is already sending in a batch of its own: this
 * chunk waits for those answers instead of paying for them again (the reuse
 * rule's third step, as `executeRealtime` does for realtime calls). Several
 * chunks of a batch stage are in flight at once, and a request two of them
 * shared went out, and was paid for, in each batch. An answer collected is
 * retired once written, as a realtime one is; a request whose batch gave no
 * answer is sent by the chunk that waited for it. With deferred collection
 * (Trigger.dev), no answer comes back to this process, so nothing is shared.
 *
 * Returns once the batches are out; `later` collects them (see `Sent`).
 */
export async function sendBatches(ctx: RunContext, stage: StagePlan, def: LlmStage, providerName: string, provider: Provider, calls: Call[], hooks: ChunkHooks, write: Flush): Promise<Sent> {
  const inflight = hooks.inflight;
  if (!inflight || ctx.options.deferBatchCollection) return executeBatch(ctx, stage, def, providerName, provider, calls, hooks.onPersisted);
  const elsewhere: Call[] = [];
  const toSend: Call[] = [];
  const mine: Promised[] = [];
  // Registered with no await between the lookup and the set.
  for (const call of calls) {
    if (inflight.get(call.hash)) {
      elsewhere.push(call);
      continue;
    }
    let answered: (r: CompletionResult | undefined) => void = () => {};
    const answer = new Promise<CompletionResult | undefined>((resolve) => (answered = resolve));
    inflight.set(call.hash, answer);
    toSend.push(call);
    mine.push({ itemId: call.itemId, hash: call.hash, answer, answered });
  }
  const waited = Promise.all(elsewhere.map((call) => inflight.shared(call.hash).then((answer) => ({ call, answer }))));
  let sent: Sent;
  try {
    sent = toSend.length ? await executeBatch(ctx, stage, def, providerName, provider, toSend, hooks.onPersisted) : { results: [] };
  } catch (err) {
    keepPromises(inflight, mine, []);
    throw err;
  }
  if (!sent.later && elsewhere.length === 0) {
    keepPromises(inflight, mine, sent.results);
    return sent;
  }
  return { results: sent.results, later: collectAndShare(ctx, stage, def, providerName, provider, hooks, write, inflight, mine, sent, waited) };
}

/** An answer this chunk's batch promised the stage's other chunks. */
interface Promised {
  itemId: string;
  hash: string;
  answer: Promise<CompletionResult | undefined>;
  answered: (r: CompletionResult | undefined) => void;
}

/** Give the other chunks the answers promised (none for a request the batch did not answer), and retire those written. */
function keepPromises(inflight: InflightAnswers, mine: Promised[], results: ItemResult[]): void {
  const byItem = new Map(results.map((r) => [r.itemId, r]));
  for (const { itemId, hash, answer, answered } of mine) {
    const result = byItem.get(itemId);
    const response = result?.answer ?? (result?.cache?.response as CompletionResult | undefined);
    if (!response) inflight.forget(hash, answer);
    answered(response);
  }
  // Written by the collection: chunks that read the request cache from here on find them there.
  inflight.retire(mine.flatMap(({ itemId, hash }) => (byItem.get(itemId)?.cache ? [hash] : [])));
}

/**
 * The rest of `sendBatches`, once the batches are out: collect them, keep
 * the promised answers, then take the answers waited for from other chunks'
 * batches (sending again those they did not answer). A function of its own
 * so that what it holds is only what it is given.
 */
function collectAndShare(
  ctx: RunContext,
  stage: StagePlan,
  def: LlmStage,
  providerName: string,
  provider: Provider,
  hooks: ChunkHooks,
  write: Flush,
  inflight: InflightAnswers,
  mine: Promised[],
  sent: Sent,
  waited: Promise<{ call: Call; answer: CompletionResult | undefined }[]>,
): () => Promise<ItemResult[]> {
  return async () => {
    let collected: ItemResult[] | undefined;
    try {
      collected = sent.later ? await sent.later() : [];
    } finally {
      keepPromises(inflight, mine, [...sent.results, ...(collected ?? [])]);
    }
    const copies: ItemResult[] = [];
    const again: Call[] = [];
    const shared = await waited;
    // Stopped (Ctrl-C) while waiting: the batch waited for gave no answers, and none is sent in its place.
    if (ctx.signal?.aborted) throw ctx.signal.reason;
    for (const { call, answer } of shared) {
      if (answer) copies.push(fromAnswer(call.itemId, call.loaded.inputHash, checkCompletion(def, call.loaded.input, answer), answer));
      else again.push(call);
    }
    await write(copies);
    const resent = again.length ? await whenCollected(sendBatches(ctx, stage, def, providerName, provider, again, hooks, write)) : [];
    return [...collected, ...copies, ...resent];
  };
}

/**
 * Submit the calls as provider batches; `later` polls and collects each
 * (unless collection is deferred to another task: see `collectReadyBatches`).
 */
export async function executeBatch(ctx: RunContext, stage: StagePlan, def: LlmStage, providerName: string, provider: Provider, calls: Call[], onPersisted?: (r: ItemResult[]) => void, { rest = false } = {}): Promise<Sent> {
  const api = provider.batch!;
  const byCustomId = new Map(calls.map((c) => [c.request.customId, c]));
  const rows: BatchRow[] = [];
  const refused: ItemResult[] = [];
  let stopped: BudgetExhaustedError | undefined;
  // Requests that did not fit in the budget with the batches sent so far reserved: sent once those are collected.
  let unsent: CompletionRequest[] = [];
  const groups = packBatches(calls.map((c) => c.request), { maxRequests: api.maxRequests, maxBytes: api.maxBytes });
  // Cut by the budget: no further group goes out here (a submission that failed `continue`s to this check too).
  for (let g = 0; g < groups.length && !stopped && unsent.length === 0; g++) {
    let group = groups[g]!;
    // Stopped (Ctrl-C): no further batch is recorded or sent; those already sent are collected by `resume`.
    if (ctx.signal?.aborted) throw ctx.signal.reason;
    const tag = `sub_${randomBytes(8).toString("hex")}`;
    const id = batchKey(tag, endpointOf(ctx, providerName));
    if (ctx.budget) {
      // The whole batch is reserved before it is recorded and sent, each
      // request for the longest answer it may get: as many as fit. When none
      // fits, the budget is spent and the rest stays queued. When some do,
      // the rest goes out once this batch is collected, settled at what its
      // answers cost (often far less than reserved), in one more batch (`rest`)
      // cut to what fits then; what does not fit in that stays queued. So a
      // budget a run's batches fit in at what they cost is not stopped by
      // what they might have cost, and a run that does not fit stops after two
      // batch windows, not one more each time the room shrinks. A chunk that
      // does not collect its batches (deferred) stops at the first cut.
      const budget = ctx.budget;
      const last = rest || Boolean(ctx.options.deferBatchCollection);
      const fits = await budget.reserveBatch(batchClaimant(id), group.map((r) => budget.estimateUsd(r, "batch")), { wholeOrStop: last });
      if (fits === 0 || (fits < group.length && last)) {
        stopped = budget.exhausted;
        ctx.logger.warn(`stage ${stage.id}: ${group.length - fits} of ${group.length} requests of a ${providerName} batch do not fit in the budget; ${fits ? `sending ${fits}` : "sending none"}`);
        group = group.slice(0, fits);
        if (group.length === 0) break;
      } else if (fits < group.length) {
        unsent = [...group.slice(fits), ...groups.slice(g + 1).flat()];
        ctx.logger.warn(`stage ${stage.id}: ${group.length - fits} of ${group.length} requests of a ${providerName} batch do not fit in the budget, each reserved for its longest answer; sending ${fits}, and the rest once it is collected and what it cost is known`);
        group = group.slice(0, fits);
      }
    }
    const requests: Record<string, BatchEntry> = {};
    for (const request of group) {
      const call = byCustomId.get(request.customId)!;
      requests[request.customId] = { itemId: call.itemId, inputHash: call.loaded.inputHash, requestHash: call.hash, request };
    }
    // Recorded (and its items handed over) before it is sent: a process
    // killed while submitting is followed by one that finds the batch at the
    // provider by its tag, instead of paying for it again.
    const row: BatchRow = { id, batchId: tag, provider: providerName, status: "submitting", requests };
    const itemIds = group.map((r) => byCustomId.get(r.customId)!.itemId);
    await recordBatch(ctx.db, at(ctx, stage), row, ctx.workerId, itemIds, ctx.soleWorker ? undefined : ctx.workerId, [...new Set(group.map((r) => byCustomId.get(r.customId)!.hash))]);
    let batchId: string;
    try {
      ({ batchId } = await api.submit(group, { tag }));
    } catch (err) {
      // Stopped (Ctrl-C) while submitting: the row stays `submitting`, and
      // the next process to resume the stage looks for the batch.
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      // Refused with an answer (a 4xx), the provider created nothing. Any
      // other failure (the connection lost while creating) may have left a
      // batch behind: it is looked for before its items are sent again.
      if (!(err instanceof DeterministicError)) {
        const found = await findSubmission(ctx, stage, provider, row, ctx.workerId).catch((lookup: unknown) => {
          // Not even that could be asked: the row stays `submitting`, for a resume to look again.
          ctx.logger.warn(`stage ${stage.id}: ${providerName} batch submission failed (${errorMessage(err)}) and the provider could not be asked whether it arrived (${errorMessage(lookup)}); \`sluice resume\` looks again`);
          return undefined;
        });
        if (found === undefined) continue;
        if (found) {
          rows.push(row);
          continue;
        }
      } else {
        await withdrawBatch(ctx.db, at(ctx, stage), row.id, ctx.workerId);
      }
      // Nothing was submitted: these items are retried later (transient) or dead-lettered (deterministic); the run goes on,
      // unless no submission of the stage can succeed (a revoked key): then the stage stops, its items queued.
      if (err instanceof DeterministicError && err.stageWide) throw stageHalted(ctx, def, err);
      const attempts = await attemptsSoFar(ctx, stage, itemIds);
      refused.push(...group.map((r) => failure(ctx, byCustomId.get(r.customId)!.itemId, byCustomId.get(r.customId)!.loaded.inputHash, err, attempts, `${providerName} batch submission failed`)));
      continue;
    }
    await batchSubmitted(ctx.db, row.id, batchId);
    Object.assign(row, { batchId, status: "submitted" });
    ctx.logger.info(`stage ${stage.id}: submitted ${providerName} batch ${batchId} (${group.length} requests)`);
    rows.push(row);
  }
  if (refused.length) {
    await persistResults(ctx, stage, refused);
    onPersisted?.(refused);
  }
  const left = unsent.map((r) => byCustomId.get(r.customId)!);
  if (ctx.options.deferBatchCollection || rows.length === 0) {
    // Collected later (`collectReadyBatches`); what was sent is held by its batch meanwhile.
    if (stopped) throw stopped;
    return { results: refused };
  }
  const cutoff = await cutoffOf(ctx, def, calls.length);
  const sendRest = left.length ? () => executeBatch(ctx, stage, def, providerName, provider, left, onPersisted, { rest: true }) : undefined;
  return { results: refused, later: collecting(ctx, stage, def, provider, rows.map(idsAndHashes), onPersisted, cutoff, stopped, sendRest) };
}

/** A batch as its collection needs it: each request's item and hashes, not the request (recorded with the batch). */
function idsAndHashes(row: BatchRow): BatchRow {
  const requests: Record<string, BatchEntry> = {};
  for (const [customId, { itemId, inputHash, requestHash }] of Object.entries(row.requests)) requests[customId] = { itemId, inputHash, requestHash };
  return { ...row, requests };
}

/**
 * Poll and collect the batches a chunk sent; then, if the budget stopped the
 * sending, say so, or send what did not fit in it until these were settled
 * (`sendRest`).
 */
function collecting(
  ctx: RunContext,
  stage: StagePlan,
  def: LlmStage,
  provider: Provider,
  rows: BatchRow[],
  onPersisted: ((r: ItemResult[]) => void) | undefined,
  cutoff: Date | undefined,
  stopped: BudgetExhaustedError | undefined,
  sendRest?: () => Promise<Sent>,
): () => Promise<ItemResult[]> {
  return async () => {
    const results = (await Promise.all(rows.map((row) => collectBatch(ctx, stage, def, provider, row, onPersisted, cutoff)))).flat();
    // What was sent is collected (it is paid for); the items that did not fit stay queued.
    if (stopped) throw stopped;
    return sendRest ? [...results, ...(await whenCollected(sendRest()))] : results;
  };
}


/**
 * Take over the batches of this stage whose worker is gone (crashed, killed)
 * and collect them: they are polled, not resubmitted.
 */
export async function resumeBatches(ctx: RunContext, stage: StagePlan, provider: (name: string) => Provider, onPersisted?: (r: ItemResult[]) => void): Promise<number> {
  const def = ctx.pipeline.stages[stage.index] as LlmStage;
  // Embedded PGlite has one process: a batch not this worker's is a dead process's.
  const orphans = await adoptOrphanBatches<BatchEntry>(ctx.db, at(ctx, stage), ctx.workerId, ctx.options.leaseMs, ctx.db.kind === "pglite");
  for (const row of orphans) {
    if (row.status === "submitting" && !(await findSubmission(ctx, stage, provider(row.provider), row, undefined))) continue;
    ctx.logger.info(`stage ${stage.id}: resuming ${row.provider} batch ${row.batchId} (polling, not resubmitting)`);
    await collectBatch(ctx, stage, def, provider(row.provider), row, onPersisted, await cutoffOf(ctx, def, Object.keys(row.requests).length));
  }
  return orphans.length;
}

/** When a batch of `calls` requests of this stage is cut for the deadline; none without one. */
async function cutoffOf(ctx: RunContext, def: LlmStage, calls: number): Promise<Date | undefined> {
  const deadline = deadlineOf(ctx, def);
  return deadline && (await batchCutoff(ctx, def, calls, deadline));
}

/**
 * Poll once each provider batch of this stage that this worker holds, or
 * whose worker is gone, and collect those that have ended. Nothing waits
 * here: the caller decides how long to wait before the next look (a
 * Trigger.dev task run suspends, billed nothing), no later than `pollBy`.
 * With a deadline, a batch still running at its cutoff is cancelled here, as
 * `waitForBatch` does in one process: `pollBy` is then soon, and when the
 * provider says it stopped, what it finished is kept and the rest is sent
 * realtime. Returns how many are still in flight, how many were collected,
 * and the results they wrote.
 */
export async function collectReadyBatches(ctx: RunContext, stage: StagePlan, provider: (name: string) => Provider, onPersisted?: (r: ItemResult[]) => void): Promise<{ inFlight: number; collected: number; results: ItemResult[]; pollBy?: Date }> {
  const def = ctx.pipeline.stages[stage.index] as LlmStage;
  const results: ItemResult[] = [];
  const mine = await uncollectedBatchesOf<BatchEntry>(ctx.db, at(ctx, stage), ctx.workerId);
  const orphans = await adoptOrphanBatches<BatchEntry>(ctx.db, at(ctx, stage), ctx.workerId, ctx.options.leaseMs, ctx.db.kind === "pglite");
  let inFlight = 0;
  let collected = 0;
  let pollBy: number | undefined;
  const pollNoLaterThan = (t: number) => (pollBy = Math.min(pollBy ?? t, t));
  for (const row of [...mine, ...orphans]) {
    if (row.status === "submitting" && !(await findSubmission(ctx, stage, provider(row.provider), row, undefined))) continue;
    const api = provider(row.provider).batch!;
    const status = await pollStatus(api, row.batchId);
    const cutoff = await cutoffOf(ctx, def, Object.keys(row.requests).length);
    if (status === "in_progress") {
      inFlight++;
      if (!cutoff || row.status === BATCH_CUTTING) continue;
      if (Date.now() < cutoff.getTime()) pollNoLaterThan(cutoff.getTime());
      else {
        // Cancelled: polled again soon, until the provider says it stopped (a cancel not sent is sent at that poll).
        await cutBatch(ctx, api, row);
        pollNoLaterThan(Date.now() + ctx.options.batchPollMs);
      }
      continue;
    }
    await setBatchStatus(ctx.db, row.id, status);
    ctx.logger.info(`stage ${stage.id}: ${row.provider} batch ${row.batchId} ended (${status}); collecting`);
    results.push(...(await collectBatch(ctx, stage, def, provider(row.provider), row, onPersisted, cutoff)));
    collected++;
  }
  return { inFlight, collected, results, ...(pollBy !== undefined ? { pollBy: new Date(pollBy) } : {}) };
}

/**
 * A batch whose submission was cut short (a dead process's, or one whose
 * answer was lost): if the provider has it, it is recorded and collected like
 * any other; if not, the submission never got there, and its items go back to
 * `giveBackTo` (the worker that tried), or to the queue, to be sent again.
 */
async function findSubmission(ctx: RunContext, stage: StagePlan, provider: Provider, row: BatchRow, giveBackTo?: string): Promise<boolean> {
  const tag = row.id.slice(0, row.id.indexOf("@"));
  const since = new Date(row.createdAt ?? Date.now());
  const known = await batchIdsSince(ctx.db, new Date(since.getTime() - CLOCK_SKEW_S * 1000));
  const found = await provider.batch?.findSubmitted?.(tag, { requests: Object.keys(row.requests).length, since, known });
  if (!found) {
    ctx.logger.info(`stage ${stage.id}: a ${row.provider} batch submission that was cut short never reached the provider; its ${Object.keys(row.requests).length} requests will be sent again`);
    await withdrawBatch(ctx.db, at(ctx, stage), row.id, giveBackTo);
    return false;
  }
  await batchSubmitted(ctx.db, row.id, found);
  Object.assign(row, { batchId: found, status: "submitted" });
  ctx.logger.info(`stage ${stage.id}: found ${row.provider} batch ${found}, whose submission was cut short before it was recorded`);
  return true;
}
