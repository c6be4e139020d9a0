import { describe, expect, it } from "vitest";
import { TransientError } from "../core/errors.ts";
import { ModelLimiter, ProviderLimiter, type CallOutcome, type LimiterOptions } from "./limiter.ts";
import { AimdConcurrency } from "./limits/concurrency.ts";
import { FakeClock } from "./limits/clock.ts";

interface Run {
  /** Fake-clock times at which calls were sent. */
  sentAt: number[];
  outcomes: CallOutcome["kind"][];
}

/**
 * Queue `n` calls on a limiter; each takes `latencyMs` of fake time and ends
 * with whatever `respond` says. Returns when the fake clock has advanced `forMs`.
 */
async function drive(
  clock: FakeClock,
  limiter: ModelLimiter,
  opts: {
    n: number;
    tokens: number;
    latencyMs: number;
    forMs: number;
    respond?: (i: number, sentAt: number) => CallOutcome;
  },
): Promise<Run> {
  const run: Run = { sentAt: [], outcomes: [] };
  const respond = opts.respond ?? (() => ({ kind: "ok", inputTokens: opts.tokens, outputTokens: 0 }) as CallOutcome);
  for (let i = 0; i < opts.n; i++) {
    limiter.acquire(opts.tokens).then(
      (permit) => {
        const sentAt = clock.now();
        run.sentAt.push(sentAt);
        clock.setTimer(() => {
          const o = respond(i, sentAt);
          run.outcomes.push(o.kind);
          permit.done(o);
        }, opts.latencyMs);
      },
      () => run.outcomes.push("aborted"),
    );
  }
  await clock.advance(opts.forMs);
  return run;
}

function maxInWindow(times: number[], windowMs: number): number {
  const t = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, j = 0; i < t.length; i++) {
    while (t[i]! - t[j]! >= windowMs) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

describe("ModelLimiter pacing", () => {
  it("paces to RPM when requests bind, smoothly rather than in a burst", async () => {
    const clock = new FakeClock();
    const limiter = new ModelLimiter("m", { limits: { rpm: 600, tpm: 1_000_000 }, clock });
    const run = await drive(clock, limiter, { n: 2_000, tokens: 100, latencyMs: 200, forMs: 60_000 });
    // 98% pace plus a one-second burst: between 95% and 100% of the limit in a minute.
    expect(run.sentAt.length).toBeGreaterThanOrEqual(570);
    expect(run.sentAt.length).toBeLessThanOrEqual(600);
    // No second ever carries much more than a second's share (10) of the budget.
    expect(maxInWindow(run.sentAt, 1_000)).toBeLessThanOrEqual(20);
    expect(maxInWindow(run.sentAt.slice(20), 10_000)).toBeLessThanOrEqual(100);
  });

  it("paces to TPM when tokens bind", async () => {
    const clock = new FakeClock();
    const limiter = new ModelLimiter("m", { limits: { rpm: 600, tpm: 100_000 }, clock });
    // 500 tokens a call: TPM allows 200 calls a minute, RPM 600.
    const run = await drive(clock, limiter, { n: 1_000, tokens: 500, latencyMs: 200, forMs: 60_000 });
    expect(run.sentAt.length).toBeGreaterThanOrEqual(190);
    expect(run.sentAt.length).toBeLessThanOrEqual(204);
    expect(limiter.stats().tpm).toBe(100_000);
  });

  it("gives back over-estimated tokens after the call", async () => {
    const clock = new FakeClock();
    const limiter = new ModelLimiter("m", { limits: { tpm: 60_000 }, clock });
    // Charged 1,000 up front, actually used 100: the refund lets ~10x as many through.
    const run = await drive(clock, limiter, {
      n: 2_000,
      tokens: 1_000,
      latencyMs: 100,
      forMs: 60_000,
      respond: () => ({ kind: "ok", inputTokens: 80, outputTokens: 20 }),
    });
    expect(run.sentAt.length).toBeGreaterThan(500);
    expect(run.sentAt.length).toBeLessThanOrEqual(600 + 10);
  });

  it("charges a call that used more than estimated to the calls after it", async () => {
    const clock = new FakeClock();
    const limiter = new ModelLimiter("m", { limits: { tpm: 60_000 }, clock });
    const run = await drive(clock, limiter, {
      n: 2_000,
      tokens: 100,
      latencyMs: 100,
      forMs: 60_000,
      respond: () => ({ kind: "ok", inputTokens: 300, outputTokens: 200 }),
    });
    // 500 real tokens a call at 60k/min is 120 calls, not the 600 the estimate alone would allow.
    expect(run.sentAt.length).toBeLessThanOrEqual(135);
    expect(run.sentAt.length).toBeGreaterThanOrEqual(110);
  });

  it("learns limits from response headers and never exceeds configured ones", async () => {
    const clock = new FakeClock();
    const limiter = new ModelLimiter("m", { limits: { rpm: 1_000 }, clock });
    const rate = { requests: { limit: 120, remaining: 100 }, tokens: { limit: 50_000, remaining: 40_000 } };
    const run = await drive(clock, limiter, {
      n: 500,
      tokens: 10,
      latencyMs: 50,
      forMs: 60_000,
      respond: () => ({ kind: "ok", inputTokens: 10, outputTokens: 0, rate }),
    });
    expect(limiter.stats().rpm).toBe(120);
    expect(limiter.stats().tpm).toBe(50_000);
    expect(run.sentAt.length).toBeLessThanOrEqual(140);
    const capped = new ModelLimiter("m", { limits: { rpm: 60 }, clock });
    const p = await capped.acquire(1);
    p.done({ kind: "ok", inputTokens: 1, outputTokens: 0, rate: { requests: { limit: 600 } } });
    expect(capped.stats().rpm).toBe(60);
  });
});

describe("ModelLimiter on 429", () => {
  it("pauses the whole model for retry-after, not just the rejected call", async () => {
    const clock = new FakeClock();
    const limiter = new ModelLimiter("m", { limits: { rpm: 600 }, clock });
    let rejected = false;
    const run = await drive(clock, limiter, {
      n: 200,
      tokens: 10,
      latencyMs: 100,
      forMs: 10_000,
      respond: (i) => {
        if (i === 5 && !rejected) {
          rejected = true;
          return { kind: "rate_limited", retryAfterMs: 5_000 };
        }
        return { kind: "ok", inputTokens: 10, outputTokens: 0 };
      },
    });
    const rejectedAt = run.sentAt[5]! + 100;
    const during = run.sentAt.filter((t) => t > rejectedAt && t < rejectedAt + 5_000);
    expect(during).toHaveLength(0);
    expect(run.sentAt.filter((t) => t >= rejectedAt + 5_000).length).toBeGreaterThan(30);
    expect(limiter.stats().rateLimited).toBe(1);
  });

  it("keeps buckets and concurrency when the 429's headers show room, but still pauses", async () => {
    const clock = new FakeClock();
    const limiter = new ModelLimiter("m", { limits: { rpm: 600, tpm: 100_000 }, clock, concurrency: { initial: 8 } });
    const permits = await Promise.all([limiter.acquire(10), limiter.acquire(10)]);
    const room = { requests: { remaining: 500 }, tokens: { remaining: 90_000 } };
    permits[0]!.done({ kind: "rate_limited", retryAfterMs: 2_000, rate: room });
    expect(limiter.stats().concurrency).toBe(8);
    let sentAt = -1;
    void limiter.acquire(10).then((p) => {
      sentAt = clock.now();
      p.done({ kind: "ok", inputTokens: 10, outputTokens: 0 });
    });
    await clock.advance(3_000);
    // Paused for the retry-after, then sent at once: the buckets were not drained.
    expect(sentAt).toBe(2_000);
    // Without room in the headers it is our limit: concurrency is cut.
    permits[1]!.done({ kind: "rate_limited", retryAfterMs: 0, rate: { requests: { remaining: 0 }, tokens: { remaining: 90_000 } } });
    expect(limiter.stats().concurrency).toBe(4);
  });

  it("adapts concurrency instead of storming a limit it does not know", async () => {
    const clock = new FakeClock();
    const limiter = new ModelLimiter("m", { clock, concurrency: { initial: 4 } });
    // A provider that takes at most 8 calls at once and says nothing else.
    let inFlight = 0;
    let saw429 = 0;
    for (let i = 0; i < 3_000; i++) {
      void limiter.acquire(1).then((permit) => {
        inFlight++;
        const over = inFlight > 8;
        clock.setTimer(() => {
          inFlight--;
          if (over) saw429++;
          permit.done(over ? { kind: "rate_limited", retryAfterMs: 0 } : { kind: "ok", inputTokens: 1, outputTokens: 0 });
        }, 200);
      });
    }
    await clock.advance(60_000);
    const stats = limiter.stats();
    // The ceiling is 8 calls x 5 per second: 2,400 a minute.
    expect(stats.succeeded).toBeGreaterThan(2_000);
    // AIMD probes the edge now and then; it must not live there.
    expect(saw429 / stats.sent).toBeLessThan(0.03);
    expect(stats.concurrency).toBeLessThanOrEqual(9);
    expect(stats.concurrency).toBeGreaterThanOrEqual(2);
  });
});

describe("AimdConcurrency", () => {
  it("grows while saturated, halves once per congestion event", () => {
    const c = new AimdConcurrency({ initial: 4, max: 64 });
    c.onSuccess(false);
    expect(c.limit).toBe(4);
    for (let i = 0; i < 4; i++) c.onSuccess(true);
    expect(c.limit).toBe(8);
    const before = c.epoch;
    expect(c.onPushBack(before)).toBe(true);
    expect(c.limit).toBe(4);
    // A second 429 from a call sent before the cut is the same event.
    expect(c.onPushBack(before)).toBe(false);
    expect(c.limit).toBe(4);
    // After the first push-back, growth is additive: about +1 per limit's worth of successes.
    for (let i = 0; i < 4; i++) c.onSuccess(true);
    expect(c.limit).toBe(4);
    for (let i = 0; i < 4; i++) c.onSuccess(true);
    expect(c.limit).toBe(5);
  });

  it("cuts by a quarter on overload without lowering its ceiling", () => {
    const c = new AimdConcurrency({ initial: 16, max: 64 });
    c.onPushBack(c.epoch, "limit"); // ceiling 16, level 8
    c.onPushBack(c.epoch, "overload");
    expect(c.limit).toBe(6);
    // Growth resumes up to just under the ceiling learned from the 429, not the overload's level.
    for (let i = 0; i < 200; i++) c.onSuccess(true);
    expect(c.limit).toBe(15);
  });
});

describe("circuit breaker", () => {
  const opts: LimiterOptions & { breaker: { failureThreshold: number; coolDownMs: number } } = {
    breaker: { failureThreshold: 3, coolDownMs: 1_000 },
  };

  it("opens after N consecutive failures, fails fast, half-opens with one probe, closes on success", async () => {
    const clock = new FakeClock();
    const provider = new ProviderLimiter("openai", { ...opts, clock });
    const a = provider.forModel("a");
    const b = provider.forModel("b");
    for (let i = 0; i < 2; i++) (await a.acquire(1)).done({ kind: "failed" });
    (await a.acquire(1)).done({ kind: "ok", inputTokens: 1, outputTokens: 0 });
    expect(provider.breaker.state).toBe("closed");
    for (let i = 0; i < 3; i++) (await a.acquire(1)).done({ kind: "overloaded" });
    expect(provider.breaker.state).toBe("open");

    // Every model of the provider fails fast, with how long to wait.
    const err = await b.acquire(1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as TransientError).retryAfterMs).toBeGreaterThan(900);
    expect((err as TransientError).retryAfterMs).toBeLessThanOrEqual(1_000);

    await clock.advance(1_000);
    expect(provider.breaker.state).toBe("half_open");
    const probe = await a.acquire(1);
    let heldGotThrough = false;
    void b.acquire(1).then((p) => {
      heldGotThrough = true;
      p.done({ kind: "ok", inputTokens: 1, outputTokens: 0 });
    });
    await clock.advance(10);
    expect(heldGotThrough).toBe(false);
    probe.done({ kind: "ok", inputTokens: 1, outputTokens: 0 });
    await clock.advance(10);
    expect(heldGotThrough).toBe(true);
    expect(provider.breaker.state).toBe("closed");
  });

  it("a failed probe opens it again for longer, and rejects the calls held behind it", async () => {
    const clock = new FakeClock();
    const provider = new ProviderLimiter("anthropic", { ...opts, clock });
    const m = provider.forModel("m");
    for (let i = 0; i < 3; i++) (await m.acquire(1)).done({ kind: "failed" });
    await clock.advance(1_000);
    const probe = await m.acquire(1);
    const held = m.acquire(1).catch((e: unknown) => e);
    probe.done({ kind: "failed" });
    const err = await held;
    expect(err).toBeInstanceOf(TransientError);
    expect((err as TransientError).retryAfterMs).toBeGreaterThan(1_900);
    expect(provider.breaker.state).toBe("open");
    await clock.advance(1_500);
    expect(provider.breaker.state).toBe("open");
    await clock.advance(600);
    expect(provider.breaker.state).toBe("half_open");
  });

  it("does not count 429s or 400s as outages", async () => {
    const clock = new FakeClock();
    const provider = new ProviderLimiter("openai", { ...opts, clock, defaultRetryAfterMs: 1 });
    const m = provider.forModel("m");
    for (let i = 0; i < 10; i++) {
      (await m.acquire(1)).done(i % 2 ? { kind: "rejected" } : { kind: "rate_limited", retryAfterMs: 1 });
      await clock.advance(5);
    }
    expect(provider.breaker.state).toBe("closed");
  });
});

describe("ModelLimiter waiting", () => {
  it("an aborted wait leaves the queue and rejects with the abort reason", async () => {
    const clock = new FakeClock();
    const limiter = new ModelLimiter("m", { limits: { rpm: 60 }, clock, burstMs: 1_000 });
    (await limiter.acquire(1)).done({ kind: "ok", inputTokens: 1, outputTokens: 0 });
    const ac = new AbortController();
    const waiting = limiter.acquire(1, ac.signal).catch((e: unknown) => e);
    expect(limiter.stats().queued).toBe(1);
    expect(clock.pending()).toBe(1);
    ac.abort(new Error("stop"));
    expect(((await waiting) as Error).message).toBe("stop");
    expect(limiter.stats().queued).toBe(0);
    // No wake-up timer left behind to hold the process open.
    expect(clock.pending()).toBe(0);
  });
});
