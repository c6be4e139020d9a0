import type { EngineOptions } from "./context.ts";

/**
 * Exponential backoff with full jitter, never shorter than what the provider
 * asked for in `retry-after`.
 */
export function backoffMs(attempt: number, options: Pick<EngineOptions, "backoffBaseMs" | "backoffMaxMs">, retryAfterMs?: number): number {
  const ceiling = Math.min(options.backoffMaxMs, options.backoffBaseMs * 2 ** Math.max(0, attempt - 1));
  const jittered = Math.random() * ceiling;
  return Math.max(jittered, retryAfterMs ?? 0);
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
