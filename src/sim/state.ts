import type { Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { sha256 } from "../core/hash.ts";
import { defaultSimConfig, mergeConfig, type SimConfig, type SimConfigPatch } from "./config.ts";
import { RateLimiter } from "./limits.ts";
import { StatsRecorder } from "./stats.ts";

function faultsOn(config: SimConfig): boolean {
  return Object.values(config.faults).some((rate) => rate > 0) || config.batch.failureRate > 0;
}

/** Everything one simulator instance remembers between requests. */
export class SimState {
  config: SimConfig;
  stats: StatsRecorder;
  private readonly requestStats: boolean;
  limiter: RateLimiter;
  private attempts = new Map<string, number>();
  private seq = 0;
  private readonly instance = randomBytes(16).toString("hex");
  /** Batches created since the last reset, for `batch.expireBatches: [ordinals]`. */
  batchOrdinal = 0;
  /** Connections whose last answer may not have been read yet (see `watchUnread` in realtime.ts). */
  readonly unread = new WeakMap<Socket, string | undefined>();
  readonly unreadWatched = new WeakSet<Socket>();
  /** Timers holding `timeout` faults, cleared when the server closes. */
  readonly held = new Set<NodeJS.Timeout>();

  constructor(config: SimConfig = defaultSimConfig, { requestStats = true }: { requestStats?: boolean } = {}) {
    this.config = config;
    this.requestStats = requestStats;
    this.stats = new StatsRecorder({ byRequest: requestStats });
    this.limiter = new RateLimiter(config.limits);
  }

  configure(patch: SimConfigPatch): SimConfig {
    this.config = mergeConfig(this.config, patch);
    if (patch.limits) this.limiter = new RateLimiter(this.config.limits);
    return this.config;
  }

  /** Zero the stats and attempt counters, and refill every bucket. */
  reset(): void {
    this.stats = new StatsRecorder({ byRequest: this.requestStats });
    this.attempts.clear();
    this.limiter = new RateLimiter(this.config.limits);
    this.batchOrdinal = 0;
  }

  /**
   * 0 for the first attempt of a request hash, 1 for the next, and so on.
   * Without per-request stats, counted only while faults are configured:
   * with none, an attempt's number changes nothing but its latency's jitter.
   */
  nextAttempt(hash: string): number {
    if (!this.requestStats && !faultsOn(this.config)) return 0;
    const n = this.attempts.get(hash) ?? 0;
    this.attempts.set(hash, n + 1);
    return n;
  }

  /**
   * A fresh id, never repeated by another simulator instance (a restart
   * included): a real provider never hands out a batch id twice, and a store
   * that outlives the simulator keeps the ids it was given.
   */
  id(prefix: string, length = 24): string {
    return `${prefix}${sha256(`${this.instance}:${++this.seq}`).slice(0, length)}`;
  }
}
