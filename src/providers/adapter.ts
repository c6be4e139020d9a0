import type { DeterministicError, TransientError } from "../core/errors.ts";
import type { RateSnapshot } from "./limits/headers.ts";
import type { BatchApi, CompletionRequest, CompletionResult } from "./types.ts";

/**
 * What each vendor folder (`openai/`, `anthropic/`) hands to the shared
 * machinery: one realtime call that never throws for provider failures (it
 * returns them, classified, with whatever the headers said about limits), and
 * the batch API. The rate limiter and circuit breaker wrap it in `index.ts`.
 */
export type VendorCall =
  | { ok: true; result: CompletionResult; rate?: RateSnapshot }
  | { ok: false; error: TransientError | DeterministicError; rate?: RateSnapshot };

export interface VendorAdapter {
  readonly name: "openai" | "anthropic";
  call(request: CompletionRequest, signal?: AbortSignal): Promise<VendorCall>;
  readonly batch: BatchApi;
}

/** How a vendor client is built: key, endpoint, per-request timeout. */
export interface ClientSettings {
  apiKey: string;
  /** Undefined means the vendor's public endpoint. */
  baseURL?: string;
  timeoutMs: number;
}

/** Provider `custom_id`s, tool and schema names share this alphabet and length. */
export function safeName(name: string): string {
  const cleaned = name.replace(/[^a-zA-Z0-9_-]/g, "_").slice(0, 64);
  return cleaned === "" ? "output" : cleaned;
}
