import { describe, expect, it } from "vitest";
import { RateLimiter, TokenBucket } from "./limits.ts";

describe("TokenBucket", () => {
  it("starts full and refills continuously at limit per minute", () => {
    const b = new TokenBucket(600, 0);
    for (let i = 0; i < 600; i++) expect(b.tryTake(1, 0)).toBe(true);
    expect(b.tryTake(1, 0)).toBe(false);
    // 600 per minute is one per 100 ms.
    expect(b.waitMs(1, 0)).toBeCloseTo(100, 6);
    expect(b.tryTake(1, 99)).toBe(false);
    expect(b.tryTake(1, 100)).toBe(true);
    expect(b.available(30_100)).toBeCloseTo(300, 6);
    expect(b.available(10 * 60_000)).toBe(600);
  });

  it("admits exactly limit + elapsed share over a sustained window", () => {
    const b = new TokenBucket(100_000, 0);
    let taken = 0;
    // 90 s of 500-token requests every 10 ms: far more than the limit allows.
    for (let t = 0; t <= 90_000; t += 10) if (b.tryTake(500, t)) taken += 500;
    const allowed = 100_000 + (100_000 * 90_000) / 60_000;
    expect(taken).toBeLessThanOrEqual(allowed);
    expect(taken).toBeGreaterThan(allowed - 1_000);
  });

  it("never admits a request larger than a minute's allowance", () => {
    const b = new TokenBucket(1_000, 0);
    expect(b.waitMs(1_001, 0)).toBe(Infinity);
  });
});

describe("RateLimiter", () => {
  it("takes from every bucket only when all have room, and reports the longest wait", () => {
    const rl = new RateLimiter({ m: { rpm: 60, tpm: 1_000 } });
    const a = rl.admit("m", 400, 100, 0);
    expect(a.ok).toBe(true);
    expect(a.buckets).toEqual([
      { kind: "requests", limit: 60, remaining: 59, resetMs: 1_000 },
      { kind: "tokens", limit: 1_000, remaining: 500, resetMs: 30_000 },
    ]);
    const b = rl.admit("m", 500, 100, 0);
    expect(b.ok).toBe(false);
    if (b.ok) return;
    expect(b.blocking).toBe("tokens");
    expect(b.requested).toBe(600);
    expect(b.retryAfterMs).toBe(6_000);
    // The rejected request took nothing.
    expect(b.buckets.find((x) => x.kind === "requests")!.remaining).toBe(59);
    expect(rl.admit("m", 500, 100, 6_000).ok).toBe(true);
  });

  it("gives each model its own buckets, with '*' as the default and no entry as unlimited", () => {
    const rl = new RateLimiter({ "*": { rpm: 1 }, big: { rpm: 2 } });
    expect(rl.admit("a", 1, 1, 0).ok).toBe(true);
    expect(rl.admit("a", 1, 1, 0).ok).toBe(false);
    expect(rl.admit("b", 1, 1, 0).ok).toBe(true);
    expect(rl.admit("big", 1, 1, 0).ok).toBe(true);
    expect(rl.admit("big", 1, 1, 0).ok).toBe(true);
    const free = new RateLimiter({});
    for (let i = 0; i < 1_000; i++) expect(free.admit("x", 1e6, 1e6, 0).ok).toBe(true);
  });

  it("flags a request that can never fit", () => {
    const r = new RateLimiter({ m: { tpm: 100 } }).admit("m", 90, 20, 0);
    expect(r).toMatchObject({ ok: false, tooLarge: true, retryAfterMs: 60_000 });
  });
});
