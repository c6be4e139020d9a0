import { Command } from "commander";
import { existsSync } from "node:fs";
import { checkInput, runPipeline, resumeRun } from "../runners/local/index.ts";
import type { RunSummary } from "../inspect/summary.ts";
import { baselineWebAssemblyOnly, tuneForSmallRun, CliError, loadPipeline, parseDeadline, printJson, withStore } from "./common.ts";
import { estimateCli } from "./estimate.ts";
import { runSession } from "./session.ts";

export interface RunCliOptions {
  pipeline: string;
  input?: string;
  runId?: string;
  json?: boolean;
  fresh?: boolean;
  /** The run's budget in USD (`--budget`). */
  budget?: number;
  /** The run's deadline from its start (`--deadline 6h`). */
  deadline?: string;
  env?: NodeJS.ProcessEnv;
}

/** `sluice run` and `sluice resume`: open the store, then run or continue the run in a CLI session. */
export async function runCli(options: RunCliOptions): Promise<RunSummary> {
  const env = options.env ?? process.env;
  const budgetUsd = options.budget ?? budgetFromEnv(env);
  const pipeline = await loadPipeline(options.pipeline);
  // Before the store opens (which can take seconds): a bad input fails at once, and leaves no run behind.
  if (options.input !== undefined) await checkInput(options.input, pipeline);
  if (options.deadline !== undefined) parseDeadline(options.deadline);
  return withStore(env, (db) =>
    runSession({ db, pipeline, env, json: options.json, interrupted: (runId) => (runId ? `interrupted; \`sluice resume ${runId}\` (or the same command again) continues run ${runId}` : "interrupted before a run was recorded: nothing to resume") }, (base) => {
      const opts = { ...base, budgetUsd, deadline: options.deadline };
      return options.runId
        ? resumeRun(opts, options.runId)
        : runPipeline(opts, options.input!, { fresh: options.fresh ?? false, pipelineFile: /\.[cm]?[jt]s$/.test(options.pipeline) ? options.pipeline : undefined });
    }),
  );
}

export function runCommand(): Command {
  return new Command("run")
    .argument("<pipeline>", "pipeline id (pipelines/<id>.ts) or path to a pipeline file")
    // Checked in the action, not by commander: `sluice run` alone should say the pipeline is missing first.
    .option("-i, --input <file>", "CSV or JSONL file of items (required)")
    .option("--json", "print the run summary as one JSON object on the last stdout line")
    .option("--fresh", "start a new run even if an unfinished one exists for this input")
    .option("--dry-run", "print what the run would cost (sluice estimate) and exit: nothing is paid or recorded")
    .option("--budget <usd>", "stop paying once the run has spent this much (USD); `resume --budget` with more goes on", parseBudget)
    .option("--deadline <duration>", "finish within this long from the run's start (6h, 90m): `auto` stages go by batch only when the provider's recent batches fit, and a late batch's rest goes realtime", parseDeadline)
    .option("--runner <runner>", "local (in this process, default) or trigger (submit to Trigger.dev tasks)", process.env.SLUICE_RUNNER || "local")
    .action(async (pipeline: string, opts: { input?: string; json?: boolean; fresh?: boolean; dryRun?: boolean; runner: string; budget?: number; deadline?: string }) => {
      if (!opts.input) throw new CliError(`name the items to run ${pipeline} over: sluice run ${pipeline} --input <file> (CSV or JSONL)`);
      const withInput = { ...opts, input: opts.input };
      if (opts.dryRun) {
        // What `sluice estimate` does, on the baseline compiler as it runs (a brief command).
        baselineWebAssemblyOnly();
        await estimateCli({ pipeline, input: opts.input, deadline: opts.deadline, json: opts.json });
      }
      else if (opts.runner === "trigger") await submitToTrigger(pipeline, withInput);
      else if (opts.runner === "local") {
        tuneForSmallRun(opts.input);
        budgetExit(await runCli({ pipeline, input: opts.input, json: opts.json, fresh: opts.fresh, budget: opts.budget, deadline: opts.deadline }));
      }
      else throw new CliError(`--runner must be local or trigger, got "${opts.runner}"`);
    });
}

/**
 * `sluice run --runner trigger`: record the run in the shared Postgres and hand
 * it to the pipeline's orchestrator task on Trigger.dev. The pipeline code is
 * the same; only where it executes changes.
 */
async function submitToTrigger(pipelineName: string, opts: { input: string; json?: boolean; fresh?: boolean; budget?: number; deadline?: string }) {
  const pipeline = await loadPipeline(pipelineName);
  if (!existsSync(opts.input)) throw new CliError(`cannot read input ${opts.input}: no such file`);
  const { submitFromEnv } = await import("../runners/trigger/submit.ts");
  const submitted = await submitFromEnv(pipeline, opts.input, { fresh: opts.fresh, budgetUsd: opts.budget, deadline: opts.deadline });
  if (opts.json) printJson(submitted);
  else process.stdout.write(`submitted run ${submitted.runId} to Trigger.dev (orchestrator run ${submitted.triggerRunId}); follow it with sluice status ${submitted.runId}\n`);
}

/** `--budget <usd>`: a positive amount. */
export function parseBudget(value: string): number {
  const n = Number(value.replace(/^\$/, ""));
  if (!Number.isFinite(n) || n <= 0) throw new CliError(`--budget is a positive amount in USD, got "${value}"`);
  return n;
}

/** The default budget, `SLUICE_BUDGET` (or `budgetUsd` in sluice.config.ts); `--budget` wins over it. */
export function budgetFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const value = env.SLUICE_BUDGET;
  if (value === undefined || value === "") return undefined;
  const n = Number(value.replace(/^\$/, ""));
  if (!Number.isFinite(n) || n <= 0) throw new CliError(`SLUICE_BUDGET is a positive amount in USD, got "${value}"`);
  return n;
}

/**
 * A run that stopped at a budget has printed its summary (what it spent);
 * the command then exits 3 with the reason on stderr, so a script can tell it
 * from a finished run (0) and from one that could not run (1).
 */
export function budgetExit(summary: RunSummary): void {
  if (summary.status !== "budget_exhausted") return;
  process.stderr.write(`sluice: ${summary.budget?.exhausted ?? "budget exhausted"}\n`);
  process.exitCode = 3;
}

export { parseDeadline };
