import { Command } from "commander";
import { setMaxListeners } from "node:events";
import { existsSync } from "node:fs";
import { createProviders } from "../preset/providers.ts";
import { runPipeline, resumeRun } from "../runners/local/index.ts";
import type { RunSummary } from "../engine/summary.ts";
import { CliError, loadPipeline, openStore, printJson } from "./common.ts";
import { createCliLogger } from "./logger.ts";
import { progressReporter } from "./progress.ts";
import type { EngineOptions } from "../engine/context.ts";
import { formatSummary } from "./report.ts";

export interface RunCliOptions {
  pipeline: string;
  input?: string;
  runId?: string;
  json?: boolean;
  fresh?: boolean;
  env?: NodeJS.ProcessEnv;
}

/**
 * `sluice run` and `sluice resume` share this: open the store, wire
 * providers, run with progress, print the summary (human, or the JSON
 * contract as the last stdout line).
 */
export async function runCli(options: RunCliOptions): Promise<RunSummary> {
  const env = options.env ?? process.env;
  const pipeline = await loadPipeline(options.pipeline);
  if (options.input !== undefined && !existsSync(options.input)) throw new CliError(`cannot read input ${options.input}: no such file`);
  const db = await openStore(env);
  const preset = await createProviders(env);
  const progress = progressReporter({ tty: Boolean(process.stderr.isTTY) && !options.json, intervalMs: Number(env.SLUICE_PROGRESS_MS) || undefined });
  const controller = new AbortController();
  // Every in-flight provider call and backoff listens on this one signal.
  setMaxListeners(0, controller.signal);
  const onSignal = () => controller.abort(new CliError("interrupted; run `sluice resume` to continue"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    process.stderr.write(`${preset.notice}\nstore: ${db.description}\n`);
    const base = { db, pipeline, providers: preset.providers, events: progress, signal: controller.signal, logger: createCliLogger(env), options: engineOptionsFromEnv(env) };
    const summary = options.runId
      ? await resumeRun(base, options.runId)
      : await runPipeline(base, options.input!, { fresh: options.fresh ?? false, pipelineFile: /\.[cm]?[jt]s$/.test(options.pipeline) ? options.pipeline : undefined });
    progress.stop();
    if (options.json) printJson(summary);
    else process.stdout.write(`\n${formatSummary(summary)}\n`);
    return summary;
  } finally {
    progress.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await preset.close();
    await db.close();
  }
}

/** Engine tuning from the environment: `SLUICE_CONCURRENCY`, `SLUICE_CHUNK_SIZE`, `SLUICE_MAX_ATTEMPTS`, `SLUICE_BATCH_POLL_MS`. */
export function engineOptionsFromEnv(env: NodeJS.ProcessEnv): Partial<EngineOptions> {
  const num = (name: string) => (env[name] && Number(env[name]) > 0 ? Number(env[name]) : undefined);
  const options: Partial<EngineOptions> = {};
  const set = <K extends keyof EngineOptions>(key: K, value: number | undefined) => value !== undefined && (options[key] = value as EngineOptions[K]);
  set("concurrency", num("SLUICE_CONCURRENCY"));
  set("chunkSize", num("SLUICE_CHUNK_SIZE"));
  set("maxAttempts", num("SLUICE_MAX_ATTEMPTS"));
  set("batchPollMs", num("SLUICE_BATCH_POLL_MS"));
  set("leaseMs", num("SLUICE_LEASE_MS"));
  return options;
}

export function runCommand(): Command {
  return new Command("run")
    .description("run a pipeline over an input file (continues an unfinished run of the same input)")
    .argument("<pipeline>", "pipeline id (pipelines/<id>.ts) or path to a pipeline file")
    .requiredOption("-i, --input <file>", "CSV or JSONL file of items")
    .option("--json", "print the run summary as one JSON object on the last stdout line")
    .option("--fresh", "start a new run even if an unfinished one exists for this input")
    .option("--runner <runner>", "local (in this process, default) or trigger (submit to Trigger.dev tasks)", process.env.SLUICE_RUNNER || "local")
    .action(async (pipeline: string, opts: { input: string; json?: boolean; fresh?: boolean; runner: string }) => {
      if (opts.runner === "trigger") await submitToTrigger(pipeline, opts);
      else if (opts.runner === "local") await runCli({ pipeline, input: opts.input, json: opts.json, fresh: opts.fresh });
      else throw new CliError(`--runner must be local or trigger, got "${opts.runner}"`);
    });
}

/**
 * `sluice run --runner trigger`: record the run in the shared Postgres and hand
 * it to the pipeline's orchestrator task on Trigger.dev. The pipeline code is
 * the same; only where it executes changes.
 */
async function submitToTrigger(pipelineName: string, opts: { input: string; json?: boolean; fresh?: boolean }) {
  const pipeline = await loadPipeline(pipelineName);
  if (!existsSync(opts.input)) throw new CliError(`cannot read input ${opts.input}: no such file`);
  const { submitFromEnv } = await import("../runners/trigger/submit.ts");
  const submitted = await submitFromEnv(pipeline, opts.input, { fresh: opts.fresh });
  if (opts.json) printJson(submitted);
  else process.stdout.write(`submitted run ${submitted.runId} to Trigger.dev (orchestrator run ${submitted.triggerRunId}); follow it with sluice status ${submitted.runId}\n`);
}
