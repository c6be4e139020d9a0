import type { Clock } from "./clock.ts";

/**
 * A circuit breaker per provider. After `failureThreshold` consecutive
 * transient failures (5xx, 529, timeouts, resets; 429 is the buckets' business)
 * it opens for a cool-down, during which calls fail fast instead of piling onto
 * a provider that is down. Then it half-opens: one probe goes through; success
 * closes it, failure opens it again for twice as long (up to `maxCoolDownMs`).
 */
export interface BreakerOptions {
  /** Consecutive transient failures that open the circuit. Default 8. */
  failureThreshold?: number;
  /** First cool-down. Default 15 s. */
  coolDownMs?: number;
  /** Longest cool-down after repeated failed probes. Default 2 min. */
  maxCoolDownMs?: number;
}

export type BreakerState = "closed" | "open" | "half_open";

export type BreakerGate =
  | { kind: "pass" }
  /** Half-open and nobody is probing: this call is the probe. */
  | { kind: "probe" }
  /** Half-open and a probe is out: wait for its verdict. */
  | { kind: "hold" }
  | { kind: "open"; retryAfterMs: number };

export class CircuitBreaker {
  private failures = 0;
  private openUntil = 0;
  private coolDown: number;
  private probing = false;
  private st: BreakerState = "closed";
  /** When the circuit first opened with no call succeeding since: the outage's start. */
  private outageSince: number | undefined;
  /** The last failure's message (redacted by the adapter), for saying why calls wait. */
  lastFailure: string | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly threshold: number;
  private readonly baseCoolDown: number;
  private readonly maxCoolDown: number;
  opens = 0;

  constructor(private readonly clock: Clock, opts: BreakerOptions = {}) {
    this.threshold = Math.max(1, opts.failureThreshold ?? 8);
    this.baseCoolDown = opts.coolDownMs ?? 15_000;
    this.maxCoolDown = Math.max(this.baseCoolDown, opts.maxCoolDownMs ?? 120_000);
    this.coolDown = this.baseCoolDown;
  }

  get state(): BreakerState {
    if (this.st === "open" && this.clock.now() >= this.openUntil) this.st = "half_open";
    return this.st;
  }

  gate(): BreakerGate {
    const state = this.state;
    if (state === "closed") return { kind: "pass" };
    if (state === "open") return { kind: "open", retryAfterMs: Math.max(1, Math.ceil(this.openUntil - this.clock.now())) };
    return this.probing ? { kind: "hold" } : { kind: "probe" };
  }

  startProbe(): void {
    this.probing = true;
  }

  /** How long the provider has failed every call, while the circuit is not closed. */
  outageMs(): number | undefined {
    return this.outageSince === undefined ? undefined : this.clock.now() - this.outageSince;
  }

  /** The provider answered (even with a 400: it is up). */
  onSuccess(): void {
    const was = this.st;
    this.failures = 0;
    this.outageSince = undefined;
    this.probing = false;
    this.st = "closed";
    this.coolDown = this.baseCoolDown;
    if (was !== "closed") this.notify();
  }

  onFailure(wasProbe: boolean, message?: string): void {
    if (message !== undefined) this.lastFailure = message;
    if (wasProbe || this.state === "half_open") {
      this.probing = false;
      this.coolDown = Math.min(this.maxCoolDown, this.coolDown * 2);
      this.open(this.coolDown);
      return;
    }
    if (this.st === "open") return;
    if (++this.failures >= this.threshold) this.open(this.coolDown);
  }

  /** A probe that ended without a verdict (aborted): let another call probe. */
  onProbeAbandoned(): void {
    this.probing = false;
    this.notify();
  }

  /** Called on every state change; limiters use it to wake their queues. */
  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private open(ms: number): void {
    this.outageSince ??= this.clock.now();
    this.st = "open";
    this.failures = 0;
    this.opens++;
    this.openUntil = this.clock.now() + ms;
    this.notify();
  }

  private notify(): void {
    for (const fn of [...this.listeners]) fn();
  }
}
