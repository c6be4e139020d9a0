import { TransientError, type DeterministicError } from "../core/errors.ts";
import type { VendorAdapter } from "./adapter.ts";
import type { CallOutcome, ProviderLimiter } from "./limiter.ts";
import type { RateSnapshot } from "./limits/headers.ts";
import type { CallOptions, CompletionRequest, CompletionResult } from "./types.ts";

/**
 * Realtime calls through the limiter: wait for a permit (RPM, TPM,
 * concurrency, circuit), call, and report back what the provider said so the
 * buckets, the concurrency level and the breaker all learn from it.
 */
export async function limitedComplete(
  adapter: VendorAdapter,
  limiter: ProviderLimiter,
  request: CompletionRequest,
  options: CallOptions = {},
): Promise<CompletionResult> {
  const model = limiter.forModel(request.model);
  let permit;
  try {
    permit = await model.acquire(model.estimate(request), options.signal);
  } catch (err) {
    // Refused before sending (circuit open, or aborted while queued): nothing was sent or paid.
    if (err instanceof TransientError) err.notSent = true;
    throw err;
  }
  let call;
  const scoped = callSignal(options.signal);
  try {
    call = await adapter.call(request, scoped?.signal);
  } catch (err) {
    // Adapters return provider failures; a throw here is a bug, but the slot must still be freed.
    permit.done({ kind: "failed" });
    throw err;
  } finally {
    scoped?.release();
  }
  if (call.ok) {
    const u = call.result.usage;
    permit.done({ kind: "ok", inputTokens: u.inputTokens, outputTokens: u.outputTokens, rate: call.rate });
    return call.result;
  }
  permit.done(options.signal?.aborted ? { kind: "aborted" } : outcomeOf(call.error, call.rate));
  throw call.error;
}

/**
 * A signal for one call, aborted with `parent`. The vendors' SDKs add an abort
 * listener to the signal they are given and never remove it: given the run's
 * own signal, every call of a run would stay referenced from it (its request,
 * its controller) until the run ends, and each new listener costs a walk over
 * all the others. The call's own signal goes with the call; only the listener
 * on `parent` lives as long as the call, and is removed after it.
 */
export function callSignal(parent: AbortSignal | undefined): { signal: AbortSignal; release(): void } | undefined {
  if (!parent) return undefined;
  const controller = new AbortController();
  if (parent.aborted) {
    controller.abort(parent.reason);
    return { signal: controller.signal, release() {} };
  }
  const abort = () => controller.abort(parent.reason);
  parent.addEventListener("abort", abort, { once: true });
  return { signal: controller.signal, release: () => parent.removeEventListener("abort", abort) };
}

function outcomeOf(error: TransientError | DeterministicError, rate: RateSnapshot | undefined): CallOutcome {
  if (error.failureClass === "deterministic") return { kind: "rejected", rate };
  if (error.status === 429) return { kind: "rate_limited", retryAfterMs: error.retryAfterMs, rate };
  if (error.status === 529 || error.status === 503) return { kind: "overloaded", rate, message: error.message };
  return { kind: "failed", rate, message: error.message };
}
