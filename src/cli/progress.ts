import cliProgress from "cli-progress";
import type { StagePlan } from "../engine/context.ts";
import type { RunEvents } from "../runners/local/index.ts";

/**
 * Progress for a run. On a TTY: one live bar per stage (done/total, items/s,
 * ETA) from cli-progress. Otherwise (CI, pipes, --json): a plain line per
 * stage at most every `intervalMs`, and one when the stage ends. Always on
 * stderr, so stdout stays clean for `--json`.
 */
export function progressReporter(options: { tty: boolean; quiet?: boolean; intervalMs?: number; stream?: NodeJS.WriteStream }): RunEvents & { stop(): void; log(line: string): void } {
  const stream = options.stream ?? process.stderr;
  const write = (line: string) => !options.quiet && stream.write(`${line}\n`);
  const starts = new Map<number, { at: number; done: number }>();
  const rate = (stage: StagePlan, done: number) => {
    const s = starts.get(stage.index);
    if (!s) return 0;
    const secs = (Date.now() - s.at) / 1000;
    return secs > 0 ? (done - s.done) / secs : 0;
  };

  const common: RunEvents = {
    runStarted: (run, continued) => write(`${continued ? "continuing" : "started"} run ${run.id} (${run.pipeline})`),
    loaded: (rows) => write(`read ${rows.toLocaleString("en-US")} rows`),
  };

  if (options.tty && !options.quiet) {
    const multi = new cliProgress.MultiBar(
      {
        format: " {stage} |{bar}| {value}/{total} · {speed} items/s · ETA {eta_formatted}",
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        stream,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    const bars = new Map<number, cliProgress.SingleBar>();
    return {
      ...common,
      runStarted: (run, continued) => multi.log(`${continued ? "continuing" : "started"} run ${run.id} (${run.pipeline})\n`),
      loaded: (rows) => multi.log(`read ${rows.toLocaleString("en-US")} rows\n`),
      stageStarted(stage, counts) {
        starts.set(stage.index, { at: Date.now(), done: counts.total - counts.open });
        bars.set(stage.index, multi.create(counts.total, counts.total - counts.open, { stage: stage.id.padEnd(10), speed: "0" }));
      },
      progress(stage, done, total) {
        const bar = bars.get(stage.index);
        bar?.setTotal(total);
        bar?.update(done, { speed: rate(stage, done).toFixed(0) });
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
      starts.set(stage.index, { at: Date.now(), done: counts.total - counts.open });
      last.set(stage.index, Date.now());
      // A later stage of a segment has no items yet: they reach it chunk by chunk.
      write(counts.total === 0 ? `stage ${stage.id}: takes items as earlier stages pass them on` : `stage ${stage.id}: ${counts.total - counts.open}/${counts.total} done at start`);
    },
    progress(stage, done, total) {
      const now = Date.now();
      if (now - (last.get(stage.index) ?? 0) < interval || done >= total) return;
      last.set(stage.index, now);
      const r = rate(stage, done);
      const eta = r > 0 ? `${Math.ceil((total - done) / r)}s` : "?";
      write(`stage ${stage.id}: ${done}/${total} · ${r.toFixed(0)} items/s · ETA ${eta}`);
    },
    stageFinished(stage, counts) {
      const s = starts.get(stage.index);
      const secs = s ? ((Date.now() - s.at) / 1000).toFixed(1) : "?";
      const parts = Object.entries(counts.byStatus).map(([k, v]) => `${k} ${v}`).join(", ");
      write(`stage ${stage.id}: done in ${secs}s (${parts || "no items"})`);
    },
    stop() {},
    log: (line: string) => stream.write(`${line}\n`),
  };
}
