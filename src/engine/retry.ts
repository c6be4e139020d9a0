import type { EngineOptions } from "./context.ts";

type BackoffOptions = Pick<EngineOptions, "backoffBaseMs" | "backoffMaxMs">;

/**
 * The engine's backoff, the one formula: after `attempt` attempts, wait up to
 * the base delay doubled per attempt, capped at the longest single backoff.
 */
export function backoffCeilingMs(attempt: number, options: BackoffOptions): number {
  return Math.min(options.backoffMaxMs, options.backoffBaseMs * 2 ** Math.max(0, attempt - 1));
}

/**
 * Exponential backoff with full jitter, never shorter than what the provider
 * asked for in `retry-after`.
 */
export function backoffMs(attempt: number, options: BackoffOptions, retryAfterMs?: number): number {
  const jittered = Math.random() * backoffCeilingMs(attempt, options);
  return Math.max(jittered, retryAfterMs ?? 0);
}

/** Enough attempts for any ceiling to reach the cap (2^40 times the base). */
const DELAY_STEPS = 41;
const delayTables = new WeakMap<object, readonly number[]>();

/**
 * How long an item to retry waits before it can be claimed again, in seconds,
 * by attempts spent (index 0: none; the last applies beyond): the backoff
 * ceiling, with no jitter, since claims spread the items out anyway. The store
 * writes `not_before` from this table.
 */
export function retryDelaysSeconds(options: BackoffOptions): readonly number[] {
  let table = delayTables.get(options);
  if (!table) {
    table = Array.from({ length: DELAY_STEPS }, (_, spent) => backoffCeilingMs(spent, options) / 1000);
    delayTables.set(options, table);
  }
  return table;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", abort);
      resolve();
    }
    function abort() {
      clearTimeout(timer);
      reject(signal!.reason);
    }
    signal?.addEventListener("abort", abort, { once: true });
  });
}
