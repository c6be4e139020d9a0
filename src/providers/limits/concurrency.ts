/**
 * Adaptive concurrency (AIMD, as TCP does it): grow the number of calls in
 * flight while they succeed, halve it when the provider pushes back (429, 529,
 * 503). Pacing by the token buckets keeps us under known limits; this is what
 * keeps an unknown or shared limit from turning into a storm of 429s.
 *
 * Push-back arrives a round trip late, so every call sent above the limit in
 * that round trip is rejected. To keep those rounds rare, the level where
 * push-back last happened is remembered: growth stops just below it and only
 * probes one step higher after a long stretch of quiet success.
 */
export interface ConcurrencyOptions {
  /** Calls in flight at the start. Default 4. */
  initial?: number;
  /** Never fewer than this. Default 1. */
  min?: number;
  /** Never more than this. Default 256. */
  max?: number;
}

export class AimdConcurrency {
  private value: number;
  private readonly min: number;
  private readonly max: number;
  /** Slow start (+1 per success, doubling per round trip) until the first push-back. */
  private slowStart = true;
  /**
   * Bumped at each decrease. Push-back for a call sent in an earlier epoch is
   * part of a congestion event already answered (a count, not a timestamp:
   * many calls share one millisecond).
   */
  private epochNo = 0;
  /** Where the provider last pushed back; growth holds just under it. */
  private ceiling: number | undefined;
  private quiet = 0;
  /** Round trips of quiet before probing above the ceiling; doubles each time a probe is pushed back. */
  private patience = 16;
  decreases = 0;

  constructor(opts: ConcurrencyOptions = {}) {
    this.min = Math.max(1, opts.min ?? 1);
    this.max = Math.max(this.min, opts.max ?? 256);
    this.value = clamp(opts.initial ?? 4, this.min, this.max);
  }

  /** Whole calls allowed in flight now. */
  get limit(): number {
    return Math.floor(this.value);
  }

  /**
   * A call succeeded. `saturated` says whether the limit was what held calls
   * back when it was sent; growing a limit nobody is pressing on would only
   * store up a burst for later.
   */
  onSuccess(saturated: boolean): void {
    if (!saturated) return;
    if (this.slowStart) {
      this.value = clamp(this.value + 1, this.min, this.max);
      return;
    }
    const top = this.ceiling === undefined ? this.max : Math.max(this.min, this.ceiling - 1);
    if (this.value >= top) {
      if (++this.quiet >= this.patience * this.limit && this.ceiling !== undefined) {
        this.ceiling++;
        this.quiet = 0;
      }
      return;
    }
    this.value = clamp(Math.min(top, this.value + 1 / this.value), this.min, this.max);
  }

  /** Stamp a call with this when it is sent. */
  get epoch(): number {
    return this.epochNo;
  }

  /**
   * The provider pushed back on a call sent in `epoch`. `"limit"` (a 429 that
   * looks like ours) halves the level and remembers it as the ceiling;
   * `"overload"` (529, 503: the provider as a whole is busy, and such errors
   * also come at random) cuts by a quarter and teaches nothing about our own
   * ceiling, so scattered overload errors cannot ratchet concurrency down to
   * one. Returns whether the level was cut.
   */
  onPushBack(epoch: number, kind: "limit" | "overload" = "limit"): boolean {
    this.slowStart = false;
    if (epoch !== this.epochNo) return false;
    if (kind === "limit") {
      const level = Math.floor(this.value);
      // Pushed back again at (or one step over) the same level: that limit is real, probe it less often.
      this.patience = this.ceiling !== undefined && level <= this.ceiling + 1 ? Math.min(256, this.patience * 2) : 16;
      this.ceiling = level;
      this.quiet = 0;
    }
    this.value = clamp(this.value * (kind === "limit" ? 0.5 : 0.75), this.min, this.max);
    this.epochNo++;
    this.decreases++;
    return true;
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}
