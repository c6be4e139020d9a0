import { Command } from "commander";
import { requireRun } from "../store/runs.ts";
import { summarizeRun } from "../inspect/summary.ts";
import { CliError, withStore } from "./common.ts";
import { budgetExit, parseBudget, runCli } from "./run.ts";

/** Look up which pipeline a run belongs to, then continue it. */
export async function resumeCli(runId: string, options: { json?: boolean; pipeline?: string; budget?: number; env?: NodeJS.ProcessEnv } = {}) {
  // Closed before the run goes on: runCli opens its own store.
  const run = await withStore(options.env, async (db) => {
    const found = await requireRun(db, runId);
    // A run's budget is all it may spend, what it spent included: one below that would stop it at once.
    if (options.budget !== undefined) {
      const spent = (await summarizeRun(db, runId)).costUsd;
      if (options.budget < spent) throw new CliError(`--budget $${options.budget.toFixed(4)} is less than the $${spent.toFixed(4)} run ${runId} has spent already; a run's budget is all it may spend, what it spent included`);
    }
    return found;
  });
  // A run started from a pipeline file (not pipelines/<id>.ts) remembers the file.
  const file = typeof run.options.pipelineFile === "string" ? run.options.pipelineFile : undefined;
  return runCli({ pipeline: options.pipeline ?? file ?? run.pipeline, runId, json: options.json, budget: options.budget, env: options.env });
}

export function resumeCommand(): Command {
  return new Command("resume")
    .argument("<runId>")
    .option("--json", "print the run summary as one JSON object on the last stdout line")
    .option("--pipeline <file>", "pipeline file to use (default: the one the run was started with)")
    .option("--budget <usd>", "the run's budget in USD (all it may spend, what it spent so far included); a run stopped at its budget goes on with a larger one", parseBudget)
    .action(async (runId: string, opts: { json?: boolean; pipeline?: string; budget?: number }) => {
      budgetExit(await resumeCli(runId, opts));
    });
}
