/**
 * Time as the limiter sees it. Injected so limiter tests run on a fake clock:
 * a minute of pacing is checked in milliseconds of real time.
 */
export interface Clock {
  now(): number;
  /** Run `fn` after `ms`; returns a function that cancels it. */
  setTimer(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    // Not unref'd: a caller awaiting a paced permit holds no other handle, and
    // the process must not exit under it. Limiters cancel timers they no longer need.
    const t = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(t);
  },
};

interface FakeTimer {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock that only moves when told to. `advance` fires due timers in time
 * order and lets promise callbacks settle between them, so code awaiting a
 * permit sees the same order of events it would see in real time.
 *
 * @example
 * const clock = new FakeClock();
 * const limiter = new ModelLimiter("gpt-4o-mini", { limits: { rpm: 60 }, clock });
 * await clock.advance(1_000);
 */
export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: FakeTimer[] = [];

  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): () => void {
    const timer: FakeTimer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  }

  /** Move time forward by `ms`, firing every timer that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await settle();
    for (;;) {
      const next = this.timers
        .filter((x) => x.at <= end)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) break;
      this.timers = this.timers.filter((x) => x !== next);
      this.t = Math.max(this.t, next.at);
      next.fn();
      await settle();
    }
    this.t = end;
    await settle();
  }

  /** Timers not yet fired (for assertions). */
  pending(): number {
    return this.timers.length;
  }
}

/** Let every queued promise callback run (they may queue more; setImmediate runs after all of them). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
