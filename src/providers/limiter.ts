import { TransientError } from "../core/errors.ts";
import type { CompletionRequest } from "./types.ts";
import { TokenBucket } from "./limits/bucket.ts";
import { CircuitBreaker, type BreakerOptions, type BreakerState } from "./limits/breaker.ts";
import { systemClock, type Clock } from "./limits/clock.ts";
import { AimdConcurrency, type ConcurrencyOptions } from "./limits/concurrency.ts";
import { estimateInputTokens, OutputEstimate } from "./limits/estimate.ts";
import type { RateSnapshot } from "./limits/headers.ts";

/**
 * The rate limiter: one `ModelLimiter` per (provider, model), holding requests
 * per minute and tokens per minute at once as continuously refilled buckets,
 * paced a little under the limit with a small burst (a provider's own bucket
 * refills continuously, so a minute's budget sent at once is what earns 429s).
 * Tokens are estimated before the call and corrected from usage after it;
 * response headers tighten the buckets and teach the real limits; a 429 pauses
 * the whole model, not just the one request. Concurrency adapts (AIMD) and one
 * circuit breaker per provider fails calls fast while the provider is down.
 */
export interface LimiterOptions {
  /** Limits per model. Unset ones are learned from response headers (when `learnLimits`). */
  limits?: { rpm?: number; tpm?: number };
  /** Adopt the limits the provider reports in its headers (never above configured ones). Default true. */
  learnLimits?: boolean;
  /** Fraction of the limit to pace at, leaving room for clock skew between us and the provider. Default 0.98. */
  pace?: number;
  /** Bucket capacity as milliseconds of refill: the largest burst. Default 1000. */
  burstMs?: number;
  concurrency?: ConcurrencyOptions;
  /** Pause after a 429 that says nothing about when to come back. Default 1000. */
  defaultRetryAfterMs?: number;
  clock?: Clock;
}

/** What became of a call made under a permit. */
export type CallOutcome =
  | { kind: "ok"; inputTokens: number; outputTokens: number; rate?: RateSnapshot }
  /** 429. */
  | { kind: "rate_limited"; retryAfterMs?: number; rate?: RateSnapshot }
  /** 529 or 503: the provider as a whole is saturated. */
  | { kind: "overloaded"; rate?: RateSnapshot; message?: string }
  /** Another transient failure: 5xx, timeout, connection reset. */
  | { kind: "failed"; rate?: RateSnapshot; message?: string }
  /** A deterministic error: the request was wrong, the provider is fine. */
  | { kind: "rejected"; rate?: RateSnapshot }
  | { kind: "aborted" };

export interface Permit {
  /** Tokens charged to the bucket for this call. */
  readonly estimatedTokens: number;
  /** Report the outcome exactly once; it releases the concurrency slot. */
  done(outcome: CallOutcome): void;
}

export interface LimiterStats {
  model: string;
  sent: number;
  succeeded: number;
  rateLimited: number;
  overloaded: number;
  failed: number;
  rejected: number;
  inFlight: number;
  queued: number;
  concurrency: number;
  /** Limits in force (configured or learned); undefined when unknown. */
  rpm?: number;
  tpm?: number;
}

interface Waiter {
  tokens: number;
  resolve: (p: Permit) => void;
  reject: (e: unknown) => void;
  cleanup: () => void;
}

/**
 * The limiter of one (provider, model). Usually obtained from
 * `ProviderLimiter.forModel`, which shares the provider's circuit breaker.
 *
 * @example
 * const limiter = new ModelLimiter("gpt-4o-mini", { limits: { rpm: 600, tpm: 100_000 } });
 * const permit = await limiter.acquire(limiter.estimate(request));
 */
export class ModelLimiter {
  private readonly clock: Clock;
  private readonly pace: number;
  private readonly burstMs: number;
  private readonly learn: boolean;
  private readonly defaultRetryAfterMs: number;
  private readonly configured: { rpm?: number; tpm?: number };
  private learned: { rpm?: number; tpm?: number } = {};
  private rpmBucket?: TokenBucket;
  private tpmBucket?: TokenBucket;
  private readonly aimd: AimdConcurrency;
  private readonly output = new OutputEstimate();
  private readonly queue: Waiter[] = [];
  private inFlight = 0;
  private pausedUntil = 0;
  private cancelTimer?: () => void;
  private timerAt = Number.POSITIVE_INFINITY;
  private pumping = false;
  private readonly counts = { sent: 0, succeeded: 0, rateLimited: 0, overloaded: 0, failed: 0, rejected: 0 };

  constructor(
    readonly model: string,
    opts: LimiterOptions = {},
    private readonly breaker: CircuitBreaker = new CircuitBreaker(opts.clock ?? systemClock),
    private readonly label = model,
  ) {
    this.clock = opts.clock ?? systemClock;
    this.pace = opts.pace ?? 0.98;
    this.burstMs = opts.burstMs ?? 1000;
    this.learn = opts.learnLimits ?? true;
    this.defaultRetryAfterMs = opts.defaultRetryAfterMs ?? 1000;
    this.configured = { ...opts.limits };
    this.aimd = new AimdConcurrency(opts.concurrency);
    this.applyLimits();
    breaker.subscribe(() => this.pump());
  }

  /** Tokens to charge for a request: its input now, plus a reserve for its answer. */
  estimate(req: CompletionRequest): number {
    return estimateInputTokens(req) + this.output.reserve(req.params.maxTokens);
  }

  /**
   * Wait for room to send one call costing `tokens`. Rejects at once with a
   * TransientError while the provider's circuit is open.
   *
   * @example
   * const permit = await limiter.acquire(limiter.estimate(req));
   * try { const r = await call(); permit.done({ kind: "ok", inputTokens: 10, outputTokens: 5 }); }
   * catch (e) { permit.done({ kind: "failed" }); throw e; }
   */
  acquire(tokens: number, signal?: AbortSignal): Promise<Permit> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const gate = this.breaker.gate();
    if (gate.kind === "open") return Promise.reject(this.openError(gate.retryAfterMs));
    return new Promise<Permit>((resolve, reject) => {
      const onAbort = () => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        reject(signal?.reason);
        this.pump();
      };
      const waiter: Waiter = {
        tokens: Math.max(0, tokens),
        resolve,
        reject,
        cleanup: () => signal?.removeEventListener("abort", onAbort),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.queue.push(waiter);
      this.pump();
    });
  }

  stats(): LimiterStats {
    return {
      model: this.model,
      ...this.counts,
      inFlight: this.inFlight,
      queued: this.queue.length,
      concurrency: this.aimd.limit,
      rpm: this.limitOf("rpm"),
      tpm: this.limitOf("tpm"),
    };
  }

  private limitOf(which: "rpm" | "tpm"): number | undefined {
    const c = this.configured[which];
    const l = this.learned[which];
    if (c === undefined) return l;
    return l === undefined ? c : Math.min(c, l);
  }

  private applyLimits(): void {
    const now = this.clock.now();
    const set = (limit: number | undefined, bucket: TokenBucket | undefined) => {
      if (limit === undefined || limit <= 0) return undefined;
      const rate = limit * this.pace;
      if (!bucket) return new TokenBucket(rate, this.burstMs, now);
      if (Math.abs(bucket.perMinute - rate) > 1e-9) bucket.reconfigure(rate, this.burstMs, now);
      return bucket;
    };
    this.rpmBucket = set(this.limitOf("rpm"), this.rpmBucket);
    this.tpmBucket = set(this.limitOf("tpm"), this.tpmBucket);
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        const gate = this.breaker.gate();
        if (gate.kind === "open") {
          for (const w of this.queue.splice(0)) {
            w.cleanup();
            w.reject(this.openError(gate.retryAfterMs));
          }
          return;
        }
        if (gate.kind === "hold") return;
        if (this.inFlight >= this.aimd.limit) return;
        const head = this.queue[0]!;
        const now = this.clock.now();
        const wait = Math.max(
          this.pausedUntil - now,
          this.rpmBucket?.waitFor(1, now) ?? 0,
          this.tpmBucket?.waitFor(head.tokens, now) ?? 0,
        );
        if (wait > 0) {
          this.arm(wait);
          return;
        }
        this.queue.shift();
        head.cleanup();
        head.resolve(this.dispatch(head.tokens, gate.kind === "probe", now));
      }
    } finally {
      this.pumping = false;
      // Nobody waiting: drop the wake-up timer so it cannot hold the process open.
      if (this.queue.length === 0) this.disarm();
    }
  }

  private disarm(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  private dispatch(tokens: number, probe: boolean, now: number): Permit {
    if (probe) this.breaker.startProbe();
    this.rpmBucket?.take(1, now);
    this.tpmBucket?.take(tokens, now);
    this.inFlight++;
    this.counts.sent++;
    const saturated = this.inFlight >= this.aimd.limit;
    const epoch = this.aimd.epoch;
    let settled = false;
    return {
      estimatedTokens: tokens,
      done: (outcome) => {
        if (settled) return;
        settled = true;
        this.inFlight--;
        this.settle(outcome, { tokens, probe, saturated, epoch });
        this.pump();
      },
    };
  }

  private settle(
    outcome: CallOutcome,
    call: { tokens: number; probe: boolean; saturated: boolean; epoch: number },
  ): void {
    const now = this.clock.now();
    if (outcome.kind !== "aborted" && outcome.rate) this.observe(outcome.rate, now);
    switch (outcome.kind) {
      case "ok": {
        this.counts.succeeded++;
        this.output.observe(outcome.outputTokens);
        this.tpmBucket?.adjust(call.tokens - (outcome.inputTokens + outcome.outputTokens), now);
        this.aimd.onSuccess(call.saturated);
        this.breaker.onSuccess();
        return;
      }
      case "rate_limited": {
        this.counts.rateLimited++;
        const pause = outcome.retryAfterMs ?? this.defaultRetryAfterMs;
        this.pausedUntil = Math.max(this.pausedUntil, now + pause);
        this.tpmBucket?.adjust(call.tokens, now);
        // When the 429's own headers show room in both windows, it was not our
        // RPM/TPM that ran out (a limit we cannot see, or a provider hiccup):
        // honour the pause, but keep our buckets and our concurrency.
        if (!hasRoom(outcome.rate, call.tokens)) {
          this.rpmBucket?.drain(now);
          this.tpmBucket?.drain(now);
          this.aimd.onPushBack(call.epoch, "limit");
        }
        // The provider is up and answering; rate limits are not a health failure.
        if (call.probe) this.breaker.onSuccess();
        return;
      }
      case "overloaded":
        this.counts.overloaded++;
        this.tpmBucket?.adjust(call.tokens, now);
        this.aimd.onPushBack(call.epoch, "overload");
        this.breaker.onFailure(call.probe, outcome.message);
        return;
      case "failed":
        this.counts.failed++;
        this.tpmBucket?.adjust(call.tokens, now);
        this.breaker.onFailure(call.probe, outcome.message);
        return;
      case "rejected":
        this.counts.rejected++;
        this.tpmBucket?.adjust(call.tokens, now);
        this.breaker.onSuccess();
        return;
      case "aborted":
        this.tpmBucket?.adjust(call.tokens, now);
        if (call.probe) this.breaker.onProbeAbandoned();
        return;
    }
  }

  /** Fold what the provider's headers say into our buckets. */
  private observe(rate: RateSnapshot, now: number): void {
    if (this.learn) {
      const rpm = rate.requests?.limit;
      const tpm = rate.tokens?.limit;
      if ((rpm !== undefined && rpm !== this.learned.rpm) || (tpm !== undefined && tpm !== this.learned.tpm)) {
        this.learned = { rpm: rpm ?? this.learned.rpm, tpm: tpm ?? this.learned.tpm };
        this.applyLimits();
      }
    }
    const r = rate.requests?.remaining;
    const t = rate.tokens?.remaining;
    if (r !== undefined) this.rpmBucket?.clampTo(r, now);
    if (t !== undefined) this.tpmBucket?.clampTo(t, now);
  }

  private arm(ms: number): void {
    const at = this.clock.now() + Math.max(1, Math.ceil(ms));
    if (this.cancelTimer && this.timerAt <= at) return;
    this.cancelTimer?.();
    this.timerAt = at;
    this.cancelTimer = this.clock.setTimer(() => {
      this.cancelTimer = undefined;
      this.timerAt = Number.POSITIVE_INFINITY;
      this.pump();
    }, at - this.clock.now());
  }

  private openError(retryAfterMs: number): TransientError {
    const last = this.breaker.lastFailure;
    return new TransientError(`${this.label}: circuit open after repeated provider failures${last ? ` (last: ${last})` : ""}; retry in ${retryAfterMs} ms`, {
      retryAfterMs,
      outageMs: this.breaker.outageMs(),
    });
  }
}

/** The rate headers on a 429 say both windows still had room for this call. */
function hasRoom(rate: RateSnapshot | undefined, tokens: number): boolean {
  const r = rate?.requests?.remaining;
  const t = rate?.tokens?.remaining;
  return r !== undefined && t !== undefined && r >= 1 && t >= tokens;
}

/**
 * The limiters of one provider: a `ModelLimiter` per model, sharing one
 * circuit breaker (an outage takes down every model of a provider at once).
 *
 * @example
 * const limiter = new ProviderLimiter("openai", { limits: { rpm: 600, tpm: 100_000 } });
 * const permit = await limiter.forModel("gpt-4o-mini").acquire(250);
 */
export class ProviderLimiter {
  readonly breaker: CircuitBreaker;
  private readonly models = new Map<string, ModelLimiter>();

  constructor(
    readonly provider: string,
    private readonly opts: LimiterOptions & { breaker?: BreakerOptions } = {},
  ) {
    this.breaker = new CircuitBreaker(opts.clock ?? systemClock, opts.breaker);
  }

  forModel(model: string): ModelLimiter {
    let m = this.models.get(model);
    if (!m) {
      m = new ModelLimiter(model, this.opts, this.breaker, `${this.provider}/${model}`);
      this.models.set(model, m);
    }
    return m;
  }

  stats(): { breaker: BreakerState; models: LimiterStats[] } {
    return { breaker: this.breaker.state, models: [...this.models.values()].map((m) => m.stats()) };
  }
}
