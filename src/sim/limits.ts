import type { ModelLimits } from "./config.ts";

/**
 * A token bucket that holds at most one minute's allowance and refills
 * continuously (limit / 60,000 per millisecond), the way providers describe
 * their per-minute limits. It starts full.
 *
 * @example
 * const rpm = new TokenBucket(600, 0);
 * rpm.tryTake(1, 0); // true; 599 left, back to 600 after 100 ms
 */
export class TokenBucket {
  private level: number;
  private updated: number;
  private readonly perMs: number;

  constructor(
    readonly limit: number,
    now: number,
  ) {
    this.level = limit;
    this.updated = now;
    this.perMs = limit / 60_000;
  }

  private refill(now: number): void {
    if (now > this.updated) {
      this.level = Math.min(this.limit, this.level + (now - this.updated) * this.perMs);
      this.updated = now;
    }
  }

  available(now: number): number {
    this.refill(now);
    return this.level;
  }

  /** Milliseconds until `amount` is available (0 if it is now). */
  waitMs(amount: number, now: number): number {
    this.refill(now);
    if (amount > this.limit) return Infinity;
    return this.level >= amount ? 0 : (amount - this.level) / this.perMs;
  }

  /** Milliseconds until the bucket is full again. */
  resetMs(now: number): number {
    this.refill(now);
    return (this.limit - this.level) / this.perMs;
  }

  take(amount: number, now: number): void {
    this.refill(now);
    this.level -= amount;
  }

  tryTake(amount: number, now: number): boolean {
    if (this.waitMs(amount, now) > 0) return false;
    this.take(amount, now);
    return true;
  }
}

export type LimitKind = "requests" | "tokens" | "input_tokens" | "output_tokens";

export interface BucketReport {
  kind: LimitKind;
  limit: number;
  remaining: number;
  resetMs: number;
}

export type Admission =
  | { ok: true; buckets: BucketReport[] }
  | {
      ok: false;
      buckets: BucketReport[];
      /** The bucket that needs the longest wait. */
      blocking: LimitKind;
      /** What the request asked of that bucket. */
      requested: number;
      retryAfterMs: number;
      /** The request can never fit (more tokens than a minute's allowance). */
      tooLarge: boolean;
    };

interface ModelBuckets {
  requests?: TokenBucket;
  tokens?: TokenBucket;
  input_tokens?: TokenBucket;
  output_tokens?: TokenBucket;
}

/**
 * Per-model buckets. A request is admitted only if every bucket of its model
 * has room, and then takes from all of them at once; a rejected request takes
 * nothing.
 */
export class RateLimiter {
  private readonly models = new Map<string, ModelBuckets>();

  constructor(private readonly limits: Record<string, ModelLimits>) {}

  private bucketsFor(model: string, now: number): ModelBuckets {
    let b = this.models.get(model);
    if (!b) {
      const l = this.limits[model] ?? this.limits["*"] ?? {};
      b = {
        requests: l.rpm ? new TokenBucket(l.rpm, now) : undefined,
        tokens: l.tpm ? new TokenBucket(l.tpm, now) : undefined,
        input_tokens: l.itpm ? new TokenBucket(l.itpm, now) : undefined,
        output_tokens: l.otpm ? new TokenBucket(l.otpm, now) : undefined,
      };
      this.models.set(model, b);
    }
    return b;
  }

  admit(model: string, inputTokens: number, outputTokens: number, now: number): Admission {
    const buckets = this.bucketsFor(model, now);
    const asks: [LimitKind, TokenBucket | undefined, number][] = [
      ["requests", buckets.requests, 1],
      ["tokens", buckets.tokens, inputTokens + outputTokens],
      ["input_tokens", buckets.input_tokens, inputTokens],
      ["output_tokens", buckets.output_tokens, outputTokens],
    ];
    let worst: { kind: LimitKind; wait: number; requested: number } | undefined;
    for (const [kind, bucket, amount] of asks) {
      if (!bucket) continue;
      const wait = bucket.waitMs(amount, now);
      if (wait > 0 && (!worst || wait > worst.wait)) worst = { kind, wait, requested: amount };
    }
    if (!worst) for (const [, bucket, amount] of asks) bucket?.take(amount, now);
    const reports: BucketReport[] = [];
    for (const [kind, bucket] of asks) {
      if (!bucket) continue;
      reports.push({
        kind,
        limit: bucket.limit,
        remaining: Math.max(0, Math.floor(bucket.available(now))),
        resetMs: bucket.resetMs(now),
      });
    }
    if (!worst) return { ok: true, buckets: reports };
    const tooLarge = worst.wait === Infinity;
    return {
      ok: false,
      buckets: reports,
      blocking: worst.kind,
      requested: worst.requested,
      // A request that can never fit is told to wait a full minute, not forever.
      retryAfterMs: tooLarge ? 60_000 : Math.ceil(worst.wait),
      tooLarge,
    };
  }
}
