import cliProgress from "cli-progress";
import type { StagePlan } from "../engine/context.ts";
import type { RunEvents } from "../runners/local/index.ts";

/**
 * Items per second over a sliding window, and an ETA only once that rate
 * holds still. Items are settled a chunk at a time (and a provider batch all
 * at once), so a rate read too early, or while chunks come in bursts, would
 * promise a time it cannot keep: the ETA waits until the stage has run a
 * while, settled some items, and the last few readings of the rate agree.
 *
 * @example
 * const meter = new RateMeter();
 * meter.add(Date.now(), done);
 * meter.eta(total - done); // seconds, or undefined while the rate is not stable
 */
export class RateMeter {
  private origin = { t: 0, done: 0 };
  private samples: { t: number; done: number }[] = [];
  private readings: { t: number; rate: number }[] = [];
  constructor(
    private readonly o = {
      /** The rate is measured over this much of the recent past. */
      windowMs: 10_000,
      /** No ETA before the stage has run this long... */
      minMs: 5_000,
      /** ...and settled this many items. */
      minItems: 20,
      /** The last `readings` rates (taken a second apart at least) must each be within this share of their mean. */
      tolerance: 0.25,
      readings: 3,
    },
  ) {}

  /** Where the stage started: `minMs` and `minItems` count from here. */
  start(t: number, done: number): void {
    this.origin = { t, done };
    this.samples = [{ t, done }];
    this.readings = [];
  }

  get startedAt(): number {
    return this.origin.t;
  }

  add(t: number, done: number): void {
    this.samples.push({ t, done });
    // Keep one sample older than the window, so the rate spans all of it.
    while (this.samples.length > 2 && this.samples[1]!.t <= t - this.o.windowMs) this.samples.shift();
    const rate = this.rate();
    const last = this.readings[this.readings.length - 1];
    if (rate !== undefined && (!last || t - last.t >= 1000)) {
      this.readings.push({ t, rate });
      if (this.readings.length > this.o.readings) this.readings.shift();
    }
  }

  /** Items per second over the window; undefined before a second has passed. */
  rate(): number | undefined {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.t - first.t < 1000) return undefined;
    return ((last.done - first.done) * 1000) / (last.t - first.t);
  }

  /** Long enough, enough items, and the last readings of the rate agree. */
  stable(): boolean {
    const last = this.samples[this.samples.length - 1];
    if (!last || last.t - this.origin.t < this.o.minMs || last.done - this.origin.done < this.o.minItems) return false;
    if (this.readings.length < this.o.readings) return false;
    const mean = this.readings.reduce((a, r) => a + r.rate, 0) / this.readings.length;
    return mean > 0 && this.readings.every((r) => Math.abs(r.rate - mean) <= this.o.tolerance * mean);
  }

  /** Seconds until `remaining` more items are settled at the current rate, once it is stable. */
  eta(remaining: number): number | undefined {
    const rate = this.rate();
    return rate && this.stable() ? remaining / rate : undefined;
  }
}

/** `45s`, `3m 20s`, `1h 05m`. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

interface StageProgress {
  meter: RateMeter;
  done: number;
  total: number;
  atMost?: number;
}

/** What a stage's bar or line says after its counts: rate, and the ETA once it can be trusted. */
function pace(p: StageProgress): { speed: string; until: string } {
  const rate = p.meter.rate();
  const target = p.atMost ?? p.total;
  // While earlier stages still decide, the remainder is a ceiling: no ETA is promised from it.
  const eta = p.atMost === undefined || p.atMost === p.total ? p.meter.eta(target - p.done) : undefined;
  return { speed: rate === undefined ? "–" : rate.toFixed(0), until: eta === undefined ? "" : ` · ETA ${duration(eta)}` };
}

export interface ProgressOptions {
  tty: boolean;
  quiet?: boolean;
  /** Non-TTY: at most one line per stage this often. */
  intervalMs?: number;
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** The clock (tests). */
  now?: () => number;
}

/**
 * Progress for a run. On a TTY: one live bar per stage from cli-progress,
 * `done/total` (or `done of up to N` while earlier stages of its segment
 * still decide what reaches it), items/s, and an ETA once the rate is
 * stable. Otherwise (CI, pipes, --json): a plain line per stage at most every
 * `intervalMs`, `stage <id>: <done>/<total> ...` (scripts and tests match
 * that prefix), and one when the stage ends. Always on stderr, so stdout
 * stays clean for `--json`.
 */
export function progressReporter(options: ProgressOptions): RunEvents & { stop(): void; log(line: string): void } {
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? Date.now;
  const write = (line: string) => !options.quiet && stream.write(`${line}\n`);
  const stages = new Map<number, StageProgress>();
  const begin = (stage: StagePlan, counts: { total: number; open: number }) => {
    const p: StageProgress = { meter: new RateMeter(), done: counts.total - counts.open, total: counts.total };
    p.meter.start(now(), p.done);
    stages.set(stage.index, p);
    return p;
  };
  const track = (stage: StagePlan, done: number, total: number, atMost?: number) => {
    const p = stages.get(stage.index) ?? begin(stage, { total, open: total - done });
    Object.assign(p, { done, total, atMost });
    p.meter.add(now(), done);
    return p;
  };

  const common: RunEvents = {
    runStarted: (run, continued) => write(`${continued ? "continuing" : "started"} run ${run.id} (${run.pipeline})`),
    loaded: (rows) => write(`read ${rows.toLocaleString("en-US")} rows`),
  };

  if (options.tty && !options.quiet) {
    const multi = new cliProgress.MultiBar(
      {
        // `{eta}` is cli-progress's own (its rate from the last few updates): ours is `{until}`, once the rate is stable.
        format: " {stage} |{bar}| {counts} · {speed} items/s{until}",
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        emptyOnZero: true,
        stream: stream as NodeJS.WritableStream,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    const bars = new Map<number, cliProgress.SingleBar>();
    const draw = (stage: StagePlan, p: StageProgress) => {
      const bar = bars.get(stage.index);
      if (!bar) return;
      const counts =
        p.atMost !== undefined && p.atMost > p.total ? `${int(p.done)} of up to ${int(p.atMost)}` : `${int(p.done)}/${int(p.total)}`;
      bar.setTotal(p.atMost ?? p.total);
      bar.update(p.done, { counts, ...pace(p) });
    };
    return {
      ...common,
      runStarted: (run, continued) => multi.log(`${continued ? "continuing" : "started"} run ${run.id} (${run.pipeline})\n`),
      loaded: (rows) => multi.log(`read ${rows.toLocaleString("en-US")} rows\n`),
      stageStarted(stage, counts) {
        const p = begin(stage, counts);
        bars.set(stage.index, multi.create(p.total, p.done, { stage: stage.id.padEnd(10), counts: `${int(p.done)}/${int(p.total)}`, speed: "–", until: "" }));
      },
      progress(stage, done, total, atMost) {
        draw(stage, track(stage, done, total, atMost));
      },
      stop: () => multi.stop(),
      // Lines printed above the bars, so they don't tear the live display.
      log: (line: string) => multi.log(`${line}\n`),
    };
  }

  const last = new Map<number, number>();
  const interval = options.intervalMs ?? 2000;
  return {
    ...common,
    stageStarted(stage, counts) {
      begin(stage, counts);
      last.set(stage.index, now());
      // A later stage of a segment has no items yet: they reach it chunk by chunk.
      write(counts.total === 0 ? `stage ${stage.id}: takes items as earlier stages pass them on` : `stage ${stage.id}: ${counts.total - counts.open}/${counts.total} done at start`);
    },
    progress(stage, done, total, atMost) {
      const p = track(stage, done, total, atMost);
      const t = now();
      if (t - (last.get(stage.index) ?? 0) < interval || done >= (atMost ?? total)) return;
      last.set(stage.index, t);
      const { speed, until } = pace(p);
      // `<done>/<total>` stays first: scripts match `stage <id>: <done>/`.
      const ceiling = atMost !== undefined && atMost > total ? ` (up to ${atMost} as earlier stages decide)` : "";
      write(`stage ${stage.id}: ${done}/${total}${ceiling} · ${speed} items/s${until}`);
    },
    stageFinished(stage, counts) {
      const s = stages.get(stage.index);
      const secs = s ? ((now() - s.meter.startedAt) / 1000).toFixed(1) : "?";
      const parts = Object.entries(counts.byStatus).map(([k, v]) => `${k} ${v}`).join(", ");
      write(`stage ${stage.id}: done in ${secs}s (${parts || "no items"})`);
    },
    stop() {},
    log: (line: string) => stream.write(`${line}\n`),
  };
}

const int = (n: number) => n.toLocaleString("en-US");
