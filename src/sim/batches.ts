import { sha256 } from "../core/hash.ts";
import type { BatchConfig } from "./config.ts";

export type BatchPhase =
  | "validating"
  | "in_progress"
  | "finalizing"
  | "completed"
  | "expired"
  | "cancelling"
  | "cancelled"
  | "failed";

const TERMINAL = new Set<BatchPhase>(["completed", "expired", "cancelled", "failed"]);

export interface BatchItem<In> {
  customId: string;
  input: In;
}

/** What processing one request gave: a success or an error result, in the provider's own form. */
export interface ItemOutcome<Out> {
  ok: boolean;
  out: Out;
}

/**
 * The provider-neutral life of one batch. Nothing runs on timers: each poll
 * (`advance`) moves the batch as far as the clock, or the poll count, says it
 * has got, and processes the requests that became due. So a batch costs
 * nothing while nobody asks about it, and its course is reproducible.
 *
 * @example
 * const run = new BatchRun("batch_1", items, { expires: false, orderSeed: "1:1", now: Date.now(), process });
 * run.advance(Date.now(), config.batch);
 * run.phase; // "completed" with the default config
 */
export class BatchRun<In, Out> {
  phase: BatchPhase = "validating";
  readonly createdAt: number;
  inProgressAt?: number;
  finalizingAt?: number;
  cancellingAt?: number;
  endedAt?: number;
  /** Results by request index; unset for requests never processed. */
  readonly results: (ItemOutcome<Out> | undefined)[];
  processed = 0;
  succeeded = 0;
  errored = 0;
  private polls = 0;

  constructor(
    readonly id: string,
    readonly items: BatchItem<In>[],
    private readonly opts: {
      expires: boolean;
      /** Seeds the result order: the same seed and ordinal give the same order. */
      orderSeed: string;
      now: number;
      process: (item: BatchItem<In>) => ItemOutcome<Out>;
      /** Set when the input failed validation: the batch fails instead of running. */
      invalid?: boolean;
    },
  ) {
    this.createdAt = opts.now;
    this.results = new Array(items.length);
  }

  get ended(): boolean {
    return TERMINAL.has(this.phase);
  }

  get expires(): boolean {
    return this.opts.expires;
  }

  /** Requests not processed (and never to be, once the batch has ended). */
  get unprocessed(): number {
    return this.items.length - this.processed;
  }

  /**
   * Move the batch along. `poll` is false for a call that is not a status
   * poll (a cancel), so per-poll progression does not count it.
   */
  advance(now: number, cfg: BatchConfig, poll = true): void {
    if (this.phase === "validating" && now - this.createdAt >= cfg.validatingMs) {
      if (this.opts.invalid) {
        this.phase = "failed";
        this.endedAt = now;
        return;
      }
      this.phase = "in_progress";
      this.inProgressAt = now;
    }
    if (this.phase === "in_progress") this.progress(now, cfg, poll);
    if (this.phase === "finalizing" && now - this.finalizingAt! >= cfg.finalizingMs) {
      this.phase = "completed";
      this.endedAt = now;
    }
    if (this.phase === "cancelling" && now - this.cancellingAt! >= cfg.cancelMs) {
      this.phase = "cancelled";
      this.endedAt = now;
    }
  }

  private progress(now: number, cfg: BatchConfig, poll: boolean): void {
    if (poll) this.polls++;
    const n = this.items.length;
    const fraction =
      cfg.pollsToComplete > 0
        ? this.polls / cfg.pollsToComplete
        : cfg.processingMs > 0
          ? (now - this.inProgressAt!) / cfg.processingMs
          : 1;
    const cap = this.opts.expires ? Math.floor(n * Math.min(1, Math.max(0, cfg.expireFraction))) : n;
    this.processUpTo(Math.min(cap, Math.floor(n * Math.min(1, fraction))));
    if (fraction < 1) return;
    if (this.opts.expires) {
      // The completion window ran out before the rest was reached.
      this.phase = "expired";
      this.endedAt = now;
    } else {
      this.phase = "finalizing";
      this.finalizingAt = now;
    }
  }

  private processUpTo(target: number): void {
    for (; this.processed < target; this.processed++) {
      const outcome = this.opts.process(this.items[this.processed]!);
      this.results[this.processed] = outcome;
      if (outcome.ok) this.succeeded++;
      else this.errored++;
    }
  }

  /** Ask to cancel; false when the batch is past being cancelled. */
  cancel(now: number, cfg: BatchConfig): boolean {
    // Requests that fell due by the clock before the cancel are done; then it stops.
    if (this.phase === "validating" || this.phase === "in_progress") this.advance(now, cfg, false);
    if (this.phase !== "validating" && this.phase !== "in_progress") return false;
    this.phase = "cancelling";
    this.cancellingAt = now;
    this.advance(now, cfg, false);
    return true;
  }

  /**
   * Request indices in the order results are delivered: shuffled, because
   * providers do not promise input order, but the same for the same seed and batch.
   */
  order(): number[] {
    const idx = Array.from({ length: this.items.length }, (_, i) => i);
    const next = mulberry32(parseInt(sha256(this.opts.orderSeed).slice(0, 8), 16));
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    return idx;
  }
}

/** A small seeded PRNG: uniform numbers in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

/** Whether the batch with this 1-based ordinal should expire, per `batch.expireBatches`. */
export function shouldExpire(cfg: BatchConfig, seed: number, ordinal: number): boolean {
  const e = cfg.expireBatches;
  if (Array.isArray(e)) return e.includes(ordinal);
  if (typeof e === "number") return parseInt(sha256(`${seed}:expire:${ordinal}`).slice(0, 8), 16) / 0x1_0000_0000 < e;
  return e;
}
