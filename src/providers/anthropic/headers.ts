import { msUntil, numberHeader, type HeaderBag, type RateSnapshot, type RateWindow } from "../limits/headers.ts";

/**
 * Anthropic's `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`
 * headers. When only the separate input/output token limits are sent, the
 * input one stands in for tokens (it binds first for prompt-heavy work).
 *
 * @example
 * rateFromHeaders(new Headers({ "anthropic-ratelimit-requests-remaining": "49" })); // { requests: { remaining: 49 } }
 */
export function rateFromHeaders(headers: HeaderBag | undefined | null): RateSnapshot | undefined {
  if (!headers) return undefined;
  const requests = windowOf(headers, "requests");
  const tokens = windowOf(headers, "tokens") ?? windowOf(headers, "input-tokens");
  return requests || tokens ? { requests, tokens } : undefined;
}

function windowOf(h: HeaderBag, kind: string): RateWindow | undefined {
  const w: RateWindow = {
    limit: numberHeader(h, `anthropic-ratelimit-${kind}-limit`),
    remaining: numberHeader(h, `anthropic-ratelimit-${kind}-remaining`),
    resetMs: msUntil(h.get(`anthropic-ratelimit-${kind}-reset`)),
  };
  return w.limit === undefined && w.remaining === undefined && w.resetMs === undefined ? undefined : w;
}
