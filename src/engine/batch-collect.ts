import { errorMessage, failureClassOf, TransientError } from "../core/errors.ts";
import type { LlmStage } from "../core/types.ts";
import type { BatchApi, BatchResult, CompletionRequest, CompletionResult, Provider } from "../providers/types.ts";
import { BATCH_CUTTING, batchClaimant, batchEntries, markBatchCollected, setBatchStatus, type BatchRow as StoredBatch } from "../store/batches.ts";
import { releaseHolder } from "../store/budgets.ts";
import { switchStageMode } from "../store/runs.ts";
import { attemptsSpent, stillHeldBy } from "../store/work.ts";
import type { RunContext, StagePlan } from "./context.ts";
import { loadInputs, type LoadedInput } from "./inputs.ts";
import { callLlm, checkCompletion, repairRequest, type AttemptRecord } from "./llm-call.ts";
import { groupWriter, persistResults } from "./persist.ts";
import { computed, failed, type ItemResult } from "./results.ts";
import { sleep } from "./retry.ts";
import pLimit from "p-limit";

/**
 * Collecting a provider batch (see `batch.ts` for deciding on one and
 * submitting it): polling until it ends (cancelling it at a deadline's
 * cutoff), then reading its results by custom id, judging each answer,
 * repairing or sending realtime what needs it, and writing the results.
 */

export interface BatchEntry {
  itemId: string;
  inputHash: string;
  requestHash: string;
  /**
   * The request as sent, so a quality failure can be repaired after a
   * restart. Recorded with the batch; a chunk collecting the batch it sent
   * does not hold it meanwhile (see `sendBatches`), and reads the few it
   * repairs or sends realtime back from the store.
   */
  request?: CompletionRequest;
}

export type BatchRow = StoredBatch<BatchEntry>;

export function at(ctx: RunContext, stage: StagePlan) {
  return { runId: ctx.runId, stageIndex: stage.index };
}

export function attemptsSoFar(ctx: RunContext, stage: StagePlan, itemIds: string[]): Promise<Map<string, number>> {
  return attemptsSpent(ctx.db, at(ctx, stage), itemIds);
}

/** An item whose request failed as a whole (submission, or a batch that could not be read): retry it later, or dead-letter it. */
export function failure(ctx: RunContext, itemId: string, inputHash: string, err: unknown, tries: Map<string, number>, what: string): ItemResult {
  const cls = failureClassOf(err);
  const spent = (tries.get(itemId) ?? 0) + 1;
  const retry = cls === "transient" && spent < ctx.options.maxAttempts;
  const message = `${what}: ${errorMessage(err)}${cls === "transient" && !retry ? ` (gave up after ${spent} attempts)` : ""}`;
  // One attempt row with no provider: it counts against the retry budget but was not a paid request.
  const attempt: AttemptRecord = { attempt: spent, provider: "", model: "", mode: "batch", requestHash: "", inputTokens: 0, outputTokens: 0, cachedTokens: 0, costUsd: 0, listCostUsd: 0, latencyMs: 0, errorClass: cls, errorMessage: message };
  return failed(itemId, inputHash, cls, message, { status: retry ? "failed_retryable" : "failed_terminal", attempts: [attempt] });
}

/** A batch's status, a transient failure to read it taken as still running. */
export async function pollStatus(api: BatchApi, batchId: string): Promise<string> {
  try {
    return (await api.poll(batchId)).status;
  } catch (err) {
    if (failureClassOf(err) !== "transient") throw err;
    return "in_progress";
  }
}

/**
 * Cancel a batch still running at its cutoff for a deadline, and record it
 * (`cancelling`) so the process that collects it knows. False when the
 * cancel could not be sent (a transient failure): try again at the next poll.
 */
export async function cutBatch(ctx: RunContext, api: BatchApi, row: BatchRow): Promise<boolean> {
  ctx.logger.warn(`${row.provider} batch ${row.batchId} is still running at its cutoff for the deadline: cancelling it; what it finished is kept, the rest goes out realtime`);
  try {
    await api.cancel(row.batchId);
  } catch (err) {
    // Already past cancelling (it just ended): the next poll says how it ended.
    if (failureClassOf(err) === "transient") return false;
  }
  await setBatchStatus(ctx.db, row.id, BATCH_CUTTING);
  row.status = BATCH_CUTTING;
  return true;
}

/**
 * Poll until the batch ends. Past `cutoff` (a deadline's), a batch still
 * running is cancelled once, and polled until the provider says it stopped;
 * `cut` says so (also for a batch an earlier poll, in this process or
 * another, cancelled).
 */
async function waitForBatch(ctx: RunContext, api: BatchApi, row: BatchRow, cutoff?: Date): Promise<{ status: string; cut: boolean }> {
  let interval = ctx.options.batchPollMs;
  let cut = row.status === BATCH_CUTTING;
  for (;;) {
    const status = await pollStatus(api, row.batchId);
    if (status !== "in_progress") {
      await setBatchStatus(ctx.db, row.id, status);
      return { status, cut };
    }
    if (cutoff && !cut && Date.now() >= cutoff.getTime()) {
      cut = await cutBatch(ctx, api, row);
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
 * A batch's answers are read, judged and written this many at a time, as
 * they stream from the provider: what a collection holds in memory is one
 * group's answers, inputs and results, whatever the size of the batch (up
 * to `batchChunkSize` requests, 10,000 by default), and a connection lost
 * while reading loses none of the answers read before it.
 */
export const COLLECT_GROUP = 1_000;

/**
 * Read a finished batch and write its results. Answers that need no repair
 * are written as they are read, `COLLECT_GROUP` at a time; answers that fail
 * their schema or rule get one realtime repair each, run concurrently and
 * written as they complete. A batch collected again after a crash skips
 * every item already written, so a repair that was written is never paid
 * for twice.
 */
export async function collectBatch(ctx: RunContext, stage: StagePlan, def: LlmStage, provider: Provider, row: BatchRow, onPersisted?: (r: ItemResult[]) => void, cutoff?: Date): Promise<ItemResult[]> {
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
    const entries = new Map(Object.entries(row.requests).filter(([, e]) => pending.has(e.itemId)));
    return { entries, tries: await attemptsSoFar(ctx, stage, [...entries.values()].map((e) => e.itemId)) };
  };
  // Whatever was not written when the batch cannot be polled or read (unknown
  // id after a key change, a 4xx, a connection lost while reading): given up
  // on, not the run. What was read and written before is kept, and paid.
  const giveUp = async (err: unknown, paid: number): Promise<ItemResult[]> => {
    if (ctx.signal?.aborted) throw ctx.signal.reason;
    await releaseHolder(ctx.db, batchClaimant(row.id), paid);
    const { entries, tries } = await unwritten();
    const out = [...entries.values()].map((e) => failure(ctx, e.itemId, e.inputHash, new TransientError(errorMessage(err)), tries, `${row.provider} batch ${row.batchId} could not be collected`));
    await write(out);
    await markCollected(ctx, row);
    return out;
  };
  let status: string;
  let cut = false;
  try {
    ({ status, cut } = await waitForBatch(ctx, api, row, cutoff));
  } catch (err) {
    return giveUp(err, 0);
  }
  const { entries, tries } = await unwritten();
  const written: ItemResult[] = [];
  // Answers to repair, and requests a cancelled batch never ran: each gets one realtime call once the batch is read.
  const repairs: (Later & { need: NeedsRepair })[] = [];
  const late: Later[] = [];
  // The batch is paid for: its reservation is settled with what its answers cost (once, however often it is collected).
  let paid = 0;

  /** Judge a group of answers (or of requests left without one) and write what needs no repair. */
  const settle = async (group: { customId: string; entry: BatchEntry; result: BatchResult }[]) => {
    if (group.length === 0) return;
    const inputs = await loadInputs(ctx, stage, group.map((g) => g.entry.itemId));
    const ready: ItemResult[] = [];
    for (const { customId, entry, result } of group) {
      const input = inputs.get(entry.itemId);
      const base = { attempt: (tries.get(entry.itemId) ?? 0) + 1, provider: row.provider, model: def.model, mode: "batch" as const, requestHash: entry.requestHash, latencyMs: 0 };
      if (!input) {
        ready.push(failed(entry.itemId, undefined, "deterministic", "item row missing from the run (store inconsistency)"));
        continue;
      }
      if (!result.ok && cut && failureClassOf(result.error) === "transient") {
        // Not run before the batch was cancelled for the deadline: sent realtime now (never paid in the batch).
        late.push({ customId, entry, input });
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
      else repairs.push({ customId, entry, input, need: judged });
    }
    await write(ready);
    written.push(...ready);
  };

  // Answers in the order the provider gives them; each request's first answer counts.
  const answered = new Set<string>();
  let group: { customId: string; entry: BatchEntry; result: BatchResult }[] = [];
  const reading = api.results(row.batchId)[Symbol.asyncIterator]();
  try {
    for (;;) {
      let next: IteratorResult<BatchResult>;
      try {
        next = await reading.next();
      } catch (err) {
        // The answers read so far are written; the rest of the batch is given up on.
        if (!ctx.signal?.aborted) await settle(group);
        return await giveUp(err, paid);
      }
      if (next.done) break;
      const result = next.value;
      if (answered.has(result.customId)) continue;
      answered.add(result.customId);
      if (result.ok) paid += ctx.providers.cost(def.model, result.result.usage, "batch");
      const entry = entries.get(result.customId);
      if (!entry) continue; // written already (an earlier collection), or not this batch's
      group.push({ customId: result.customId, entry, result });
      if (group.length === COLLECT_GROUP) {
        await settle(group);
        group = [];
      }
    }
  } finally {
    // Stopped early (a write failed): the provider's response is closed, not left open.
    await reading.return?.();
  }
  await releaseHolder(ctx.db, batchClaimant(row.id), paid);
  // The requests the provider returned nothing for.
  for (const [customId, entry] of entries) {
    if (answered.has(customId)) continue;
    group.push({ customId, entry, result: { customId, ok: false as const, error: new TransientError(`no result for this request in ${row.provider} batch ${row.batchId} (${status})`) } });
    if (group.length === COLLECT_GROUP) {
      await settle(group);
      group = [];
    }
  }
  await settle(group);
  if (cut) {
    const why = `${row.provider} batch ${row.batchId} still running at its cutoff for the deadline${cutoff ? ` (${cutoff.toISOString()})` : ""}, cancelled: ${entries.size - late.length} of ${entries.size} answers kept at the batch price, ${late.length} sent realtime`;
    await switchStageMode(ctx.db, ctx.runId, stage.id, "realtime", why);
    ctx.logger.warn(`stage ${stage.id}: ${why}`);
  }
  if (repairs.length) ctx.logger.info(`stage ${stage.id}: ${repairs.length} answer(s) of ${row.provider} batch ${row.batchId} failed their checks; repairing each once (realtime)`);
  const sent = await requestsAsSent(ctx, row, [...repairs, ...late]);
  const calls = [
    ...repairs.map((r) => () => sent(r, (request) => repair(ctx, def, provider, row.provider, r.entry, request, r.input, r.need))),
    ...late.map((r) => () => sent(r, (request) => realtimeInstead(ctx, def, provider, row.provider, r.entry, request, r.input))),
  ];

  const repaired: ItemResult[] = [];
  if (calls.length) {
    const limit = pLimit(ctx.options.concurrency);
    const writer = groupWriter(write, REPAIR_FLUSH);
    // allSettled: repairs that did finish (and were paid) are written even if another throws.
    const settled = await Promise.allSettled(
      calls.map((run) =>
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
  return [...written, ...repaired];
}

/** An answer of the batch to call for again (realtime), once the batch is read. */
interface Later {
  customId: string;
  entry: BatchEntry;
  input: LoadedInput;
}

/**
 * Run `call` with the request as it was sent: from the entry when it holds
 * it (a batch read back from the store after a restart), otherwise read from
 * the store, in one read for all of them.
 */
async function requestsAsSent(ctx: RunContext, row: BatchRow, later: Later[]): Promise<(r: Later, call: (request: CompletionRequest) => Promise<ItemResult>) => Promise<ItemResult>> {
  const unheld = later.filter((r) => !r.entry.request).map((r) => r.customId);
  const stored = unheld.length ? await batchEntries<BatchEntry>(ctx.db, row.id, unheld) : new Map<string, BatchEntry>();
  return async (r, call) => {
    const request = r.entry.request ?? stored.get(r.customId)?.request;
    if (!request) return failed(r.entry.itemId, r.entry.inputHash, "deterministic", `request ${r.customId} of ${row.provider} batch ${row.batchId} is not in the store (store inconsistency)`);
    return call(request);
  };
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
async function realtimeInstead(ctx: RunContext, def: LlmStage, provider: Provider, providerName: string, entry: BatchEntry, request: CompletionRequest, input: LoadedInput): Promise<ItemResult> {
  const outcome = await callLlm(ctx, def, provider, providerName, request, input.input, entry.requestHash, (fn) => fn());
  if (outcome.status !== "succeeded") return failed(entry.itemId, entry.inputHash, outcome.errorClass, outcome.message, { status: outcome.status, attempts: outcome.attempts });
  const cache = { requestHash: entry.requestHash, provider: providerName, model: def.model, response: outcome.response };
  if (!outcome.journaled) ctx.journal?.record(cache);
  return computed(entry.itemId, entry.inputHash, "succeeded_unvalidated", outcome.value, { costUsd: outcome.attempts.reduce((a, x) => a + x.costUsd, 0), attempts: outcome.attempts, cache });
}

/**
 * One realtime repair showing the model its error, under the same retry
 * policy as any realtime call (a 429 on the repair is retried, not fatal).
 */
async function repair(ctx: RunContext, def: LlmStage, provider: Provider, providerName: string, entry: BatchEntry, request: CompletionRequest, input: LoadedInput, need: NeedsRepair): Promise<ItemResult> {
  const first = need.attempt;
  const outcome = await callLlm(ctx, def, provider, providerName, repairRequest(request, need.error), input.input, entry.requestHash, (fn) => fn(), { repair: false });
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
