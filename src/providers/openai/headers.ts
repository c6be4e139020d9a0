import { numberHeader, parseDuration, type HeaderBag, type RateSnapshot, type RateWindow } from "../limits/headers.ts";

/**
 * OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers.
 *
 * @example
 * rateFromHeaders(new Headers({ "x-ratelimit-remaining-requests": "59" })); // { requests: { remaining: 59 } }
 */
export function rateFromHeaders(headers: HeaderBag | undefined | null): RateSnapshot | undefined {
  if (!headers) return undefined;
  const requests = windowOf(headers, "requests");
  const tokens = windowOf(headers, "tokens");
  return requests || tokens ? { requests, tokens } : undefined;
}

function windowOf(h: HeaderBag, kind: "requests" | "tokens"): RateWindow | undefined {
  const w: RateWindow = {
    limit: numberHeader(h, `x-ratelimit-limit-${kind}`),
    remaining: numberHeader(h, `x-ratelimit-remaining-${kind}`),
    resetMs: parseDuration(h.get(`x-ratelimit-reset-${kind}`)),
  };
  return w.limit === undefined && w.remaining === undefined && w.resetMs === undefined ? undefined : w;
}
