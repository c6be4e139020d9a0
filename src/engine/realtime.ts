import { BudgetExhaustedError, DeterministicError } from "../core/errors.ts";
import type { LlmStage } from "../core/types.ts";
import type { CompletionResult, Provider } from "../providers/types.ts";
import type { RunContext } from "./context.ts";
import type { ChunkHooks, Flush } from "./hooks.ts";
import { callLlm, checkCompletion, stageHalted } from "./llm-call.ts";
import { groupWriter } from "./persist.ts";
import { computed, failed, fromAnswer, type ItemResult } from "./results.ts";
import type { Call } from "./reuse.ts";

/** Results of realtime calls are written in groups this size (or on this interval), not one by one. */
const FLUSH_SIZE = 250;
const FLUSH_MS = 500;

/**
 * Realtime calls with bounded concurrency; results are written in groups as
 * they complete. A request another chunk of this stage already has in flight
 * is not sent again: this one waits for that answer (the reuse rule's third
 * step, across the chunks of one process).
 */
export async function executeRealtime(ctx: RunContext, def: LlmStage, providerName: string, provider: Provider, calls: Call[], hooks: ChunkHooks, write: Flush): Promise<ItemResult[]> {
  const all: ItemResult[] = [];
  const writer = groupWriter(write, FLUSH_SIZE, FLUSH_MS);
  // A stage-wide failure (a revoked key) stops every call not yet sent, here
  // and in the stage's other chunks: the calls waiting for a slot give up
  // instead of paying a doomed request each. So does a budget reached (the
  // budget's gate also refuses every other stage's calls).
  const halted = hooks.halted ?? {};
  const acquire = <T,>(fn: () => Promise<T>) =>
    hooks.acquire(async () => {
      if (halted.error) throw halted.error;
      try {
        return await fn();
      } catch (err) {
        // Set before this call gives its slot up, so the next call waiting for it sees it.
        if (err instanceof DeterministicError && err.stageWide) halted.error ??= stageHalted(ctx, def, err);
        if (err instanceof BudgetExhaustedError) halted.error ??= err;
        throw err;
      }
    });
  // allSettled, not all: on Ctrl-C the calls that did finish (and were paid)
  // are still written before the abort propagates.
  const settled = await Promise.allSettled(
    calls.map(async (r) => {
      // Wait for another chunk's call of the same request, if there is one.
      let shared: CompletionResult | undefined;
      for (let pending = hooks.inflight?.get(r.hash); pending && !shared; pending = hooks.inflight?.get(r.hash)) {
        shared = await pending;
        // That call failed: forget it, so the next caller makes its own.
        if (!shared) hooks.inflight?.forget(r.hash, pending);
      }
      if (shared) {
        const copy = fromAnswer(r.itemId, r.loaded.inputHash, checkCompletion(def, r.loaded.input, shared), shared);
        all.push(copy);
        await writer.add(copy);
        return;
      }
      // Register this call, with no await between the lookup and the set.
      let answered: (response: CompletionResult | undefined) => void = () => {};
      const mine = new Promise<CompletionResult | undefined>((resolve) => (answered = resolve));
      hooks.inflight?.set(r.hash, mine);
      let outcome: Awaited<ReturnType<typeof callLlm>> | undefined;
      try {
        // Once results cannot be written, no more calls are paid for.
        if (writer.failed) throw writer.failed;
        outcome = await callLlm(ctx, def, provider, providerName, r.request, r.loaded.input, r.hash, acquire);
      } finally {
        const response = outcome?.status === "succeeded" ? outcome.response : undefined;
        if (!response) hooks.inflight?.forget(r.hash, mine);
        answered(response);
      }
      const cache = outcome.status === "succeeded" ? { requestHash: r.hash, provider: providerName, model: def.model, response: outcome.response } : undefined;
      // Paid for: kept at once, so a kill before the group is written does not
      // lose it (unless the transport already journaled it as it arrived).
      if (cache && !(outcome.status === "succeeded" && outcome.journaled)) ctx.journal?.record(cache);
      const result =
        outcome.status === "succeeded"
          ? computed(r.itemId, r.loaded.inputHash, "succeeded_unvalidated", outcome.value, {
              costUsd: sumCost(outcome.attempts),
              attempts: outcome.attempts,
              cache,
              answer: outcome.response,
            })
          : failed(r.itemId, r.loaded.inputHash, outcome.errorClass, outcome.message, { status: outcome.status, attempts: outcome.attempts });
      all.push(result);
      await writer.add(result);
    }),
  );
  await writer.close();
  const failure = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  // A stage-wide failure says more than the calls it stopped.
  if (failure) throw halted.error ?? failure.reason;
  return all;
}

function sumCost(attempts: { costUsd: number }[]): number {
  return attempts.reduce((sum, a) => sum + a.costUsd, 0);
}
