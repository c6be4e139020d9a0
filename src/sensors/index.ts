import { SluiceError } from "../core/errors.ts";
import type { RunSummary } from "../inspect/summary.ts";
import { runPipeline, type LocalRunOptions } from "../runners/local/index.ts";
import { runIncrement, sourceKind, type IncrementOptions, type IncrementResult } from "./increments.ts";

export { runIncrement, hasNewInput, sourceKind, unreadFiles, type IncrementOptions, type IncrementResult, type SourceKind } from "./increments.ts";
export { sensorsOf } from "../core/define.ts";
export { watchPipelines, watchedPipelines, type WatchEvent, type WatchOptions } from "./watch.ts";

/**
 * Start a pipeline from another system, in this process: a table, query or
 * glob source runs over what is new since its last finished run (nothing
 * new, no run); a file source runs over `input`. What `sluice trigger` calls.
 *
 * @example
 * import { openDatabase, createProviders, triggerPipeline } from "sluice";
 * const { providers } = await createProviders(process.env);
 * const result = await triggerPipeline({ db: await openDatabase(), pipeline, providers });
 * console.log(result.runs.map((r) => r.runId));
 */
export async function triggerPipeline(opts: LocalRunOptions & IncrementOptions & { input?: string }): Promise<IncrementResult> {
  const kind = sourceKind(opts.pipeline);
  if (kind !== "file") {
    if (opts.input !== undefined) throw new SluiceError(`pipeline ${opts.pipeline.id} reads its ${kind} source; it takes no --input`);
    return runIncrement(opts, opts);
  }
  if (opts.input === undefined) throw new SluiceError(`pipeline ${opts.pipeline.id} reads a file: give it with --input`);
  const summary: RunSummary = await runPipeline(opts, opts.input);
  return { pipeline: opts.pipeline.id, source: "file", runs: [summary], read: summary.items.total };
}
