import { BudgetExhaustedError, DeterministicError, errorMessage, failureClassOf, TransientError } from "../core/errors.ts";
import type { LlmStage } from "../core/types.ts";
import { packBatches } from "../providers/batching.ts";
import type { BatchApi, BatchResult, CompletionRequest, CompletionResult, Provider } from "../providers/types.ts";
import type { RunContext, StagePlan } from "./context.ts";
import { randomBytes } from "node:crypto";
import { CLOCK_SKEW_S } from "../providers/batching.ts";
import { adoptOrphanBatches, uncollectedBatchesOf, batchClaimant, batchIdsSince, batchKey, batchSubmitted, markBatchCollected, recordBatch, setBatchStatus, withdrawBatch, type BatchRow as StoredBatch } from "../store/batches.ts";
import { settleStageMode, switchStageMode } from "../store/runs.ts";
import { batchCutoff, deadlineOf, decideMode } from "./deadline.ts";
import { releaseHolder } from "../store/budgets.ts";
import { attemptsSpent, stillHeldBy } from "../store/work.ts";
import { loadInputs, type LoadedInput } from "./inputs.ts";
import { callLlm, checkCompletion, endpointOf, repairRequest, stageHalted, type AttemptRecord } from "./llm-call.ts";
import { groupWriter, persistResults } from "./persist.ts";
import { computed, failed, type ItemResult } from "./results.ts";
import { sleep } from "./retry.ts";
import type { Call } from "./reuse.ts";
import pLimit from "p-limit";

/**
 * Batch mode: requests go to the provider's native batch API at half price.
 * The batch id is written to the store before the first poll, and the items
 * are handed to the batch (`claimed_by = batch:<id>`), so a process that dies
 * while the batch is in flight is followed by one that polls it, never by
 * one that pays for it again. Results are reconciled by custom id; only the
 * items that failed transiently or expired are queued for another batch.
 */

interface BatchEntry {
  itemId: string;
  inputHash: string;
  requestHash: string;
  /** The request as sent, so a quality failure can be repaired after a restart. */
  request: CompletionRequest;
}

type BatchRow = StoredBatch<BatchEntry>;

/**
 * Whether an LLM stage sends these calls through the batch API. In `auto`
 * mode, the first chunk of the run to make calls decides (enough calls, and
 * room for the batch window) and the run records it: every later chunk, and
 * every other process, follows, so a few items left after a crash do not go
 * out realtime at full price.
 */
export async function useBatch(ctx: RunContext, stage: StagePlan, def: LlmStage, provider: Provider, calls: number, endpoint: string): Promise<boolean> {
  if (!provider.batch || calls === 0) return false;
  if (def.mode === "batch") return true;
  if (def.mode !== "auto") return false;
  const decided = await decideMode(ctx, def, endpoint, calls);
  const mode = await settleStageMode(ctx.db, ctx.runId, stage.id, decided.mode, decided.why);
  if (mode === decided.mode) ctx.logger.info(`stage ${stage.id}: ${mode} (${decided.why})`);
  return mode === "batch";
}

/** Submit the calls as provider batches, then poll and collect each. */
export async function executeBatch(ctx: RunContext, stage: StagePlan, def: LlmStage, providerName: string, provider: Provider, calls: Call[], onPersisted?: (r: ItemResult[]) => void): Promise<ItemResult[]> {
  const api = provider.batch!;
  const byCustomId = new Map(calls.map((c) => [c.request.customId, c]));
  const rows: BatchRow[] = [];
  const refused: ItemResult[] = [];
  let stopped: BudgetExhaustedError | undefined;
  for (let group of packBatches(calls.map((c) => c.request), { maxRequests: api.maxRequests, maxBytes: api.maxBytes })) {
    const tag = `sub_${randomBytes(8).toString("hex")}`;
    const id = batchKey(tag, endpointOf(ctx, providerName));
    if (ctx.budget) {
      // The whole batch is reserved before it is recorded and sent: as many
      // of its requests as fit (the rest are not sent, and stay queued).
      const budget = ctx.budget;
      const fits = await budget.reserveBatch(batchClaimant(id), group.map((r) => budget.estimateUsd(r, "batch")));
      if (fits < group.length) {
        stopped = budget.exhausted;
        ctx.logger.warn(`stage ${stage.id}: ${group.length - fits} of ${group.length} requests of a ${providerName} batch do not fit in the budget; ${fits ? `sending ${fits}` : "sending none"}`);
        group = group.slice(0, fits);
      }
      if (group.length === 0) break;
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
    if (stopped) break;
  }
  if (refused.length) {
    await persistResults(ctx, stage, refused);
    onPersisted?.(refused);
  }
  if (ctx.options.deferBatchCollection) {
    // Collected later (`collectReadyBatches`); what was sent is held by its batch meanwhile.
    if (stopped) throw stopped;
    return refused;
  }
  const deadline = deadlineOf(ctx, def);
  const cutoff = deadline && (await batchCutoff(ctx, def, calls.length, deadline));
  const results = await Promise.all(rows.map((row) => collectBatch(ctx, stage, def, provider, row, onPersisted, cutoff)));
  // What was sent is collected (it is paid for); the items that did not fit stay queued.
  if (stopped) throw stopped;
  return [...refused, ...results.flat()];
}

function at(ctx: RunContext, stage: StagePlan) {
  return { runId: ctx.runId, stageIndex: stage.index };
}

function attemptsSoFar(ctx: RunContext, stage: StagePlan, itemIds: string[]): Promise<Map<string, number>> {
  return attemptsSpent(ctx.db, at(ctx, stage), itemIds);
}

/** An item whose request failed as a whole (submission, or a batch that could not be read): retry it later, or dead-letter it. */
function failure(ctx: RunContext, itemId: string, inputHash: string, err: unknown, tries: Map<string, number>, what: string): ItemResult {
  const cls = failureClassOf(err);
  const spent = (tries.get(itemId) ?? 0) + 1;
  const retry = cls === "transient" && spent < ctx.options.maxAttempts;
  const message = `${what}: ${errorMessage(err)}${cls === "transient" && !retry ? ` (gave up after ${spent} attempts)` : ""}`;
  // One attempt row with no provider: it counts against the retry budget but was not a paid request.
  const attempt: AttemptRecord = { attempt: spent, provider: "", model: "", mode: "batch", requestHash: "", inputTokens: 0, outputTokens: 0, cachedTokens: 0, costUsd: 0, listCostUsd: 0, latencyMs: 0, errorClass: cls, errorMessage: message };
  return failed(itemId, inputHash, cls, message, { status: retry ? "failed_retryable" : "failed_terminal", attempts: [attempt] });
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
    await collectBatch(ctx, stage, def, provider(row.provider), row, onPersisted);
  }
  return orphans.length;
}

/**
 * Poll once each provider batch of this stage that this worker holds, or
 * whose worker is gone, and collect those that have ended. Nothing waits
 * here: the caller decides how long to wait before the next look (a
 * Trigger.dev task run suspends, billed nothing). Returns how many are still
 * in flight, how many were collected, and the results they wrote.
 */
export async function collectReadyBatches(ctx: RunContext, stage: StagePlan, provider: (name: string) => Provider, onPersisted?: (r: ItemResult[]) => void): Promise<{ inFlight: number; collected: number; results: ItemResult[] }> {
  const def = ctx.pipeline.stages[stage.index] as LlmStage;
  const results: ItemResult[] = [];
  const mine = await uncollectedBatchesOf<BatchEntry>(ctx.db, at(ctx, stage), ctx.workerId);
  const orphans = await adoptOrphanBatches<BatchEntry>(ctx.db, at(ctx, stage), ctx.workerId, ctx.options.leaseMs, ctx.db.kind === "pglite");
  let inFlight = 0;
  let collected = 0;
  for (const row of [...mine, ...orphans]) {
    if (row.status === "submitting" && !(await findSubmission(ctx, stage, provider(row.provider), row, undefined))) continue;
    const api = provider(row.provider).batch!;
    let status: string;
    try {
      status = (await api.poll(row.batchId)).status;
    } catch (err) {
      if (failureClassOf(err) !== "transient") throw err;
      status = "in_progress";
    }
    if (status === "in_progress") {
      inFlight++;
      continue;
    }
    await setBatchStatus(ctx.db, row.id, status);
    ctx.logger.info(`stage ${stage.id}: ${row.provider} batch ${row.batchId} ended (${status}); collecting`);
    results.push(...(await collectBatch(ctx, stage, def, provider(row.provider), row, onPersisted)));
    collected++;
  }
  return { inFlight, collected, results };
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

/**
 * Poll until the batch ends. Past `cutoff` (a deadline's), a batch still
 * running is cancelled once, and polled until the provider says it stopped;
 * `cut` says so.
 */
async function waitForBatch(ctx: RunContext, api: BatchApi, row: BatchRow, cutoff?: Date): Promise<{ status: string; cut: boolean }> {
  let interval = ctx.options.batchPollMs;
  let cut = false;
  for (;;) {
    let status: string;
    try {
      status = (await api.poll(row.batchId)).status;
    } catch (err) {
      if (failureClassOf(err) !== "transient") throw err;
      status = "in_progress";
    }
    if (status !== "in_progress") {
      await setBatchStatus(ctx.db, row.id, status);
      return { status, cut };
    }
    if (cutoff && !cut && Date.now() >= cutoff.getTime()) {
      cut = true;
      ctx.logger.warn(`${row.provider} batch ${row.batchId} is still running at its cutoff for the deadline: cancelling it; what it finished is kept, the rest goes out realtime`);
      try {
        await api.cancel(row.batchId);
      } catch (err) {
        // Already past cancelling (it just ended): the next poll says how it ended.
        if (failureClassOf(err) === "transient") cut = false;
      }
      interval = ctx.options.batchPollMs;
      continue;
    }
    // Near a cutoff, poll no later than it.
    const wait = cutoff && !cut ? Math.max(0, Math.min(interval, cutoff.getTime() - Date.now())) : interval;
    await sleep(wait, ctx.signal);
    interval = Math.min(ctx.options.batchPollMaxMs, Math.round(interval * 1.5));
  }
}

/** Results of repairs are written in groups this size, as they complete. */
const REPAIR_FLUSH = 50;

/**
 * Read a finished batch and write its results. Answers that need no repair
 * are written at once; answers that fail their schema or rule get one
 * realtime repair each, run concurrently and written as they complete. A
 * batch collected again after a crash skips every item already written, so
 * a repair that was written is never paid for twice.
 */
async function collectBatch(ctx: RunContext, stage: StagePlan, def: LlmStage, provider: Provider, row: BatchRow, onPersisted?: (r: ItemResult[]) => void, cutoff?: Date): Promise<ItemResult[]> {
  const api = provider.batch!;
  // Writes go through the batch's claim, checked even for a sole worker: an
  // item already written (by an earlier or a concurrent collection of this
  // batch) is no longer `processing` under it, and is not written again.
  const owner: RunContext = { ...ctx, workerId: batchClaimant(row.id), soleWorker: false, lockedClaim: false };
  const write = async (results: ItemResult[]) => {
    if (results.length === 0) return;
    await persistResults(owner, stage, results);
    onPersisted?.(results);
  };
  // What is still to be written, read after the wait (which may be long).
  const unwritten = async () => {
    const pending = await stillHeld(ctx, stage, row);
    const entries = Object.entries(row.requests).filter(([, e]) => pending.has(e.itemId));
    return { entries, tries: await attemptsSoFar(ctx, stage, entries.map(([, e]) => e.itemId)) };
  };
  let status: string;
  let cut = false;
  const got = new Map<string, BatchResult>();
  try {
    ({ status, cut } = await waitForBatch(ctx, api, row, cutoff));
    for await (const result of api.results(row.batchId)) got.set(result.customId, result);
  } catch (err) {
    // The batch cannot be polled or read (unknown id after a key change, a 4xx): give up on it, not on the run.
    if (ctx.signal?.aborted) throw ctx.signal.reason;
    await releaseHolder(ctx.db, batchClaimant(row.id));
    const { entries, tries } = await unwritten();
    const out = entries.map(([, e]) => failure(ctx, e.itemId, e.inputHash, new TransientError(errorMessage(err)), tries, `${row.provider} batch ${row.batchId} could not be collected`));
    await write(out);
    await markCollected(ctx, row);
    return out;
  }
  // The batch is paid for: its reservation is settled with what its answers cost (once, however often it is collected).
  let paid = 0;
  for (const r of got.values()) if (r.ok) paid += ctx.providers.cost(def.model, r.result.usage, "batch");
  await releaseHolder(ctx.db, batchClaimant(row.id), paid);
  const { entries, tries } = await unwritten();
  const inputs = entries.length ? await loadInputs(ctx, stage, entries.map(([, e]) => e.itemId)) : new Map<string, LoadedInput>();

  const ready: ItemResult[] = [];
  const repairs: (() => Promise<ItemResult>)[] = [];
  const late: (() => Promise<ItemResult>)[] = [];
  for (const [customId, entry] of entries) {
    const input = inputs.get(entry.itemId);
    const result = got.get(customId) ?? { customId, ok: false as const, error: new TransientError(`no result for this request in ${row.provider} batch ${row.batchId} (${status})`) };
    const base = { attempt: (tries.get(entry.itemId) ?? 0) + 1, provider: row.provider, model: def.model, mode: "batch" as const, requestHash: entry.requestHash, latencyMs: 0 };
    if (!input) {
      ready.push(failed(entry.itemId, undefined, "deterministic", "item row missing from the run (store inconsistency)"));
      continue;
    }
    if (!result.ok && cut && failureClassOf(result.error) === "transient") {
      // Not run before the batch was cancelled for the deadline: sent realtime now (never paid in the batch).
      late.push(() => realtimeInstead(ctx, def, provider, row.provider, entry, input));
      continue;
    }
    if (!result.ok) {
      const attempt: AttemptRecord = { ...base, inputTokens: 0, outputTokens: 0, cachedTokens: 0, costUsd: 0, listCostUsd: 0, errorClass: failureClassOf(result.error), errorMessage: errorMessage(result.error) };
      const spent = (tries.get(entry.itemId) ?? 0) + 1;
      const retry = attempt.errorClass === "transient" && spent < ctx.options.maxAttempts;
      const message = retry ? attempt.errorMessage : `${attempt.errorMessage}${attempt.errorClass === "transient" ? ` (gave up after ${spent} attempts)` : ""}`;
      ready.push(failed(entry.itemId, entry.inputHash, attempt.errorClass, message, { status: retry ? "failed_retryable" : "failed_terminal", attempts: [attempt] }));
      continue;
    }
    const judged = judge(ctx, def, entry, input, result.result, base);
    if ("result" in judged) ready.push(judged.result);
    else repairs.push(() => repair(ctx, def, provider, row.provider, entry, input, judged));
  }
  await write(ready);
  if (cut) {
    const why = `${row.provider} batch ${row.batchId} still running at its cutoff for the deadline (${cutoff?.toISOString()}), cancelled: ${entries.length - late.length} of ${entries.length} answers kept at the batch price, ${late.length} sent realtime`;
    await switchStageMode(ctx.db, ctx.runId, stage.id, "realtime", why);
    ctx.logger.warn(`stage ${stage.id}: ${why}`);
  }
  if (repairs.length) ctx.logger.info(`stage ${stage.id}: ${repairs.length} answer(s) of ${row.provider} batch ${row.batchId} failed their checks; repairing each once (realtime)`);
  repairs.push(...late);

  const repaired: ItemResult[] = [];
  if (repairs.length) {
    const limit = pLimit(ctx.options.concurrency);
    const writer = groupWriter(write, REPAIR_FLUSH);
    // allSettled: repairs that did finish (and were paid) are written even if another throws.
    const settled = await Promise.allSettled(
      repairs.map((run) =>
        limit(async () => {
          // Once results cannot be written, no more repairs are paid for.
          if (writer.failed) throw writer.failed;
          const result = await run();
          repaired.push(result);
          await writer.add(result);
        }),
      ),
    );
    await writer.close();
    const failed = settled.find((x): x is PromiseRejectedResult => x.status === "rejected");
    if (failed) throw failed.reason;
  }
  await markCollected(ctx, row);
  return [...ready, ...repaired];
}

/** Items of the batch not yet written: still held by it, in `processing`. */
function stillHeld(ctx: RunContext, stage: StagePlan, row: BatchRow): Promise<Set<string>> {
  return stillHeldBy(ctx.db, at(ctx, stage), batchClaimant(row.id), Object.values(row.requests).map((e) => e.itemId));
}

async function markCollected(ctx: RunContext, row: BatchRow): Promise<void> {
  await markBatchCollected(ctx.db, row.id);
}

type AttemptBase = Omit<AttemptRecord, "inputTokens" | "outputTokens" | "cachedTokens" | "costUsd" | "listCostUsd">;

interface NeedsRepair {
  attempt: AttemptRecord;
  error: Parameters<typeof repairRequest>[1];
}

/** A batch answer: accepted or refused as it is, or in need of one repair. */
function judge(ctx: RunContext, def: LlmStage, entry: BatchEntry, input: LoadedInput, result: CompletionResult, base: AttemptBase): { result: ItemResult } | NeedsRepair {
  const attempt: AttemptRecord = {
    ...base,
    inputTokens: result.usage.inputTokens,
    outputTokens: result.usage.outputTokens,
    cachedTokens: result.usage.cachedInputTokens ?? 0,
    costUsd: ctx.providers.cost(def.model, result.usage, "batch"),
    listCostUsd: ctx.providers.cost(def.model, result.usage, "realtime"),
  };
  const checked = checkCompletion(def, input.input, result);
  if (checked.ok) {
    return {
      result: computed(entry.itemId, entry.inputHash, "succeeded_unvalidated", checked.value, {
        costUsd: attempt.costUsd,
        attempts: [attempt],
        cache: { requestHash: entry.requestHash, provider: base.provider, model: def.model, response: result },
      }),
    };
  }
  attempt.errorClass = "quality";
  attempt.errorMessage = checked.error.message;
  if (checked.threw) {
    // The stage's own check threw: the item is at fault, a repair cannot help.
    return { result: failed(entry.itemId, entry.inputHash, "deterministic", checked.error.message, { attempts: [attempt] }) };
  }
  return { attempt, error: checked.error };
}

/** A request a late batch never ran, sent realtime under the usual retry policy and one repair. */
async function realtimeInstead(ctx: RunContext, def: LlmStage, provider: Provider, providerName: string, entry: BatchEntry, input: LoadedInput): Promise<ItemResult> {
  const outcome = await callLlm(ctx, def, provider, providerName, entry.request, input.input, entry.requestHash, (fn) => fn());
  if (outcome.status !== "succeeded") return failed(entry.itemId, entry.inputHash, outcome.errorClass, outcome.message, { status: outcome.status, attempts: outcome.attempts });
  const cache = { requestHash: entry.requestHash, provider: providerName, model: def.model, response: outcome.response };
  if (!outcome.journaled) ctx.journal?.record(cache);
  return computed(entry.itemId, entry.inputHash, "succeeded_unvalidated", outcome.value, { costUsd: outcome.attempts.reduce((a, x) => a + x.costUsd, 0), attempts: outcome.attempts, cache });
}

/**
 * One realtime repair showing the model its error, under the same retry
 * policy as any realtime call (a 429 on the repair is retried, not fatal).
 */
async function repair(ctx: RunContext, def: LlmStage, provider: Provider, providerName: string, entry: BatchEntry, input: LoadedInput, need: NeedsRepair): Promise<ItemResult> {
  const first = need.attempt;
  const outcome = await callLlm(ctx, def, provider, providerName, repairRequest(entry.request, need.error), input.input, entry.requestHash, (fn) => fn(), { repair: false });
  const attempts = [first, ...outcome.attempts.map((a) => ({ ...a, attempt: first.attempt + a.attempt }))];
  if (outcome.status === "succeeded") {
    return computed(entry.itemId, entry.inputHash, "succeeded_unvalidated", outcome.value, {
      costUsd: attempts.reduce((a, x) => a + x.costUsd, 0),
      attempts,
      // The usable answer to this request, as a realtime call with a repair caches it
      // (duplicates of the item copy it from here).
      cache: { requestHash: entry.requestHash, provider: providerName, model: def.model, response: outcome.response },
    });
  }
  const last = attempts[attempts.length - 1]!;
  return failed(entry.itemId, entry.inputHash, last.errorClass ?? "quality", `${last.errorMessage ?? "unusable answer"} (after one repair attempt)`, {
    status: outcome.status === "needs_review" ? "needs_review" : "failed_terminal",
    attempts,
  });
}
