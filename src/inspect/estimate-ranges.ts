/** Ranges (low, best guess, high) and rates with their intervals, as `estimate` carries them. */

export interface Range {
  low: number;
  mid: number;
  high: number;
}


export type PriceMode = "realtime" | "batch";
/** A rate with its interval. */
export interface Rate extends Range {
  /** Observations it rests on (0: none, a guess). */
  n: number;
}

export const EXACT: Rate = { low: 1, mid: 1, high: 1, n: Infinity };


export function zero(): Range {
  return { low: 0, mid: 0, high: 0 };
}

export function times(a: Range, b: Range): Range {
  return { low: a.low * b.low, mid: a.mid * b.mid, high: a.high * b.high };
}

export function sumRange(rs: Range[]): Range {
  return rs.reduce((s, r) => ({ low: s.low + r.low, mid: s.mid + r.mid, high: s.high + r.high }), zero());
}

export const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
export const fmtRange = (r: Range) => `${Math.round(r.mid)} (${Math.round(r.low)}–${Math.round(r.high)})`;

/**
 * `k` of `n` with its Wilson score interval. With no observations: a gate
 * could pass anything (0..1, midpoint 0.5); a stage is assumed to let its
 * items go on (midpoint 1).
 */
export function rate(k: number | undefined, n: number | undefined, z: number, guess: "gate" | "llm" | "function" = "gate"): Rate {
  if (!n || k === undefined) return guess === "gate" ? { low: 0, mid: 0.5, high: 1, n: 0 } : { low: 0, mid: 1, high: 1, n: 0 };
  const p = k / n;
  const denom = 1 + (z * z) / n;
  const centre = (p + (z * z) / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / denom;
  return { low: Math.max(0, centre - half), mid: p, high: Math.min(1, centre + half), n };
}

export function describeRate(what: string, r: Rate, runId: string | undefined): string {
  if (!r.n) return `${what}: unknown (no earlier run), taken as ${pct(r.low)}–${pct(r.high)}`;
  return `${what}: ${pct(r.mid)} (${pct(r.low)}–${pct(r.high)}) over ${r.n} items of run ${runId}`;
}
