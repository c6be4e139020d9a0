/**
 * What a provider's response headers say about its limits, in one shape for
 * every vendor. Each vendor folder has a `headers.ts` that fills it in.
 */
export interface HeaderBag {
  get(name: string): string | null;
}

export interface RateWindow {
  /** The limit per minute the provider enforces. */
  limit?: number;
  remaining?: number;
  /** Milliseconds until the window is full again. */
  resetMs?: number;
}

export interface RateSnapshot {
  requests?: RateWindow;
  tokens?: RateWindow;
}

export function numberHeader(headers: HeaderBag, name: string): number | undefined {
  const raw = headers.get(name);
  if (raw === null || raw.trim() === "") return undefined;
  const n = Number(raw);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * Go-style durations as OpenAI sends them in `x-ratelimit-reset-*`:
 * `"1s"`, `"6m0s"`, `"20ms"`, `"1h2m3.5s"`. A bare number is seconds.
 *
 * @example
 * parseDuration("1m30.5s"); // 90500
 */
export function parseDuration(raw: string | null | undefined): number | undefined {
  if (raw === null || raw === undefined) return undefined;
  const s = raw.trim();
  if (s === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const unit: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 };
  let total = 0;
  let rest = s;
  const part = /^(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/;
  while (rest.length > 0) {
    const m = part.exec(rest);
    if (!m) return undefined;
    total += Number(m[1]) * unit[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return total;
}

/** An RFC 3339 instant (Anthropic's `*-reset`) as milliseconds from `nowMs` (wall clock). */
export function msUntil(raw: string | null, nowMs = Date.now()): number | undefined {
  if (!raw) return undefined;
  const t = Date.parse(raw);
  return Number.isFinite(t) ? Math.max(0, t - nowMs) : undefined;
}

/**
 * How long the provider asked us to wait: `retry-after-ms` (OpenAI), then
 * `retry-after` as seconds or as an HTTP date.
 *
 * @example
 * retryAfterMs(new Headers({ "retry-after": "2" })); // 2000
 */
export function retryAfterMs(headers: HeaderBag | undefined | null, nowMs = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = numberHeader(headers, "retry-after-ms");
  if (ms !== undefined && ms >= 0) return Math.ceil(ms);
  const raw = headers.get("retry-after");
  if (raw === null || raw.trim() === "") return undefined;
  const secs = Number(raw);
  if (Number.isFinite(secs)) return secs >= 0 ? Math.ceil(secs * 1000) : undefined;
  const at = Date.parse(raw);
  return Number.isFinite(at) ? Math.max(0, at - nowMs) : undefined;
}
