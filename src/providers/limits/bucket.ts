/**
 * A token bucket with continuous refill, the shape providers use for their own
 * limits. The level may go below zero: when a call turns out to have used more
 * tokens than estimated, the debt delays the calls after it instead of being
 * forgotten.
 */
export class TokenBucket {
  private level: number;
  private last: number;
  /** Units per millisecond. */
  private rate: number;
  private cap: number;

  constructor(perMinute: number, burstMs: number, now: number) {
    this.rate = perMinute / 60_000;
    this.cap = capacityFor(perMinute, burstMs);
    this.level = this.cap;
    this.last = now;
  }

  get capacity(): number {
    return this.cap;
  }

  get perMinute(): number {
    return this.rate * 60_000;
  }

  /** Change the refill rate (a learned or configured limit); the level is kept, clamped to the new capacity. */
  reconfigure(perMinute: number, burstMs: number, now: number): void {
    this.refill(now);
    this.rate = perMinute / 60_000;
    this.cap = capacityFor(perMinute, burstMs);
    this.level = Math.min(this.level, this.cap);
  }

  available(now: number): number {
    this.refill(now);
    return this.level;
  }

  /**
   * Milliseconds until `n` units are available. A request larger than the
   * whole capacity may go when the bucket is full, or it would never go.
   */
  waitFor(n: number, now: number): number {
    this.refill(now);
    const need = Math.min(n, this.cap);
    if (this.level >= need) return 0;
    return (need - this.level) / this.rate;
  }

  take(n: number, now: number): void {
    this.refill(now);
    this.level -= n;
  }

  /** Give back (positive) or charge more (negative) after the fact. */
  adjust(delta: number, now: number): void {
    this.refill(now);
    this.level = Math.min(this.cap, this.level + delta);
  }

  /** The provider says only `remaining` is left: never believe we hold more than that. */
  clampTo(remaining: number, now: number): void {
    this.refill(now);
    this.level = Math.min(this.level, remaining);
  }

  /** Empty the bucket (a 429 says we are out, whatever we thought). */
  drain(now: number): void {
    this.refill(now);
    this.level = Math.min(this.level, 0);
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.level = Math.min(this.cap, this.level + (now - this.last) * this.rate);
      this.last = now;
    }
  }
}

function capacityFor(perMinute: number, burstMs: number): number {
  // At least one whole unit, or a limit below one per burst window never lets anything through.
  return Math.max(1, (perMinute / 60_000) * burstMs);
}
