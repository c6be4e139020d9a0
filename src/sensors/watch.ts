import { setTimeout as wait } from "node:timers/promises";
import { Cron } from "croner";
import { sensorsOf } from "../core/define.ts";
import { SluiceError } from "../core/errors.ts";
import type { PipelineDef } from "../core/types.ts";
import type { LocalRunOptions } from "../runners/local/index.ts";
import { hasNewInput, runIncrement, sourceKind, type IncrementOptions, type IncrementResult } from "./increments.ts";

/**
 * `sluice watch`: one long-running process that starts pipelines when what
 * they declare happens: `schedule` (cron, by croner), `after` (another
 * pipeline's run finished with rows committed), `onNewRows` (rows past a
 * table or query source's cursor) and `onNewFiles` (a glob source's file not
 * read yet). Each start runs one increment of the pipeline's source
 * (`runIncrement`), so a sensor that fired starts the run once: once the run
 * finishes, the cursor (or the file) has moved, and the sensor is quiet until
 * new input arrives. Pipelines run one at a time.
 */

export type WatchEvent =
  | { kind: "watching"; pipeline: string; sensors: string[] }
  | { kind: "started"; pipeline: string; because: string }
  | { kind: "finished"; pipeline: string; result: IncrementResult }
  | { kind: "error"; pipeline: string; message: string }
  /** Every sensor was looked at once (and what was due ran): one poll interval's work is done. */
  | { kind: "polled"; cycle: number };

export interface WatchOptions extends Omit<LocalRunOptions, "pipeline">, IncrementOptions {
  pipelines: PipelineDef[];
  /** How often sensors are polled (and schedules checked). */
  pollMs: number;
  /** Stops watching: the run in progress is interrupted (it stays resumable) and the promise settles. */
  signal?: AbortSignal;
  onEvent?: (event: WatchEvent) => void;
}

/**
 * The pipelines `watch` takes on: those declaring a sensor. A scheduled or
 * `after` pipeline must read a table, query or glob source (watch has no
 * `--input` to give it); an `after` naming no known pipeline is refused.
 */
export function watchedPipelines(pipelines: PipelineDef[]): PipelineDef[] {
  const ids = new Set(pipelines.map((p) => p.id));
  const watched = pipelines.filter((p) => sensorsOf(p).length > 0);
  for (const p of watched) {
    if (sourceKind(p) === "file") throw new SluiceError(`pipeline ${p.id} declares ${sensorsOf(p).join(", ")} but reads a file given with --input: give it a table, query or glob source to watch it`);
    if (p.after && !ids.has(p.after)) throw new SluiceError(`pipeline ${p.id} runs after "${p.after}", which is not among the pipelines watched`);
    if (p.schedule) new Cron(p.schedule.cron, { timezone: p.schedule.timezone, paused: true });
  }
  return watched;
}

/**
 * Watch pipelines until `signal` aborts.
 *
 * @example
 * const stop = new AbortController();
 * void watchPipelines({ db, providers, pipelines, pollMs: 30_000, signal: stop.signal, onEvent: console.log });
 */
export async function watchPipelines(options: WatchOptions): Promise<void> {
  const { pipelines, pollMs, signal, onEvent, ...rest } = options;
  const watched = watchedPipelines(pipelines);
  const crons = new Map(watched.filter((p) => p.schedule).map((p) => [p.id, new Cron(p.schedule!.cron, { timezone: p.schedule!.timezone, paused: true })]));
  const nextAt = new Map([...crons].map(([id, cron]) => [id, cron.nextRun()]));
  // Pipelines whose `after` pipeline finished a run that committed rows since they last ran.
  const upstreamDone = new Set<string>();
  for (const p of watched) onEvent?.({ kind: "watching", pipeline: p.id, sensors: sensorsOf(p) });
  for (let cycle = 1; !signal?.aborted; cycle++) {
    for (const pipeline of watched) {
      if (signal?.aborted) break;
      try {
        const because = await dueBecause(pipeline);
        if (!because) continue;
        onEvent?.({ kind: "started", pipeline: pipeline.id, because });
        const result = await runIncrement({ ...rest, pipeline, signal }, rest);
        upstreamDone.delete(pipeline.id);
        onEvent?.({ kind: "finished", pipeline: pipeline.id, result });
        const committed = result.runs.some((r) => r.status === "finished" && (r.items.byStatus.committed ?? 0) > 0);
        if (committed) for (const down of watched.filter((p) => p.after === pipeline.id)) upstreamDone.add(down.id);
      } catch (err) {
        if (signal?.aborted) break;
        onEvent?.({ kind: "error", pipeline: pipeline.id, message: (err as Error).message.split("\n")[0]! });
      }
    }
    if (signal?.aborted) break;
    onEvent?.({ kind: "polled", cycle });
    // Stopping (the signal) ends the wait early; the loop then ends.
    await wait(pollMs, undefined, { signal }).catch(() => {});
  }

  async function dueBecause(pipeline: PipelineDef): Promise<string | undefined> {
    const next = nextAt.get(pipeline.id);
    if (next && next.getTime() <= Date.now()) {
      nextAt.set(pipeline.id, crons.get(pipeline.id)!.nextRun());
      return `schedule "${pipeline.schedule!.cron}" (due ${next.toISOString()})`;
    }
    if (upstreamDone.has(pipeline.id)) return `after ${pipeline.after} committed rows`;
    if (pipeline.onNewRows || pipeline.onNewFiles) {
      const { due, why } = await hasNewInput(rest.db, pipeline, rest);
      if (due) return why;
    }
    return undefined;
  }
}
