import { Command } from "commander";
import { newerFinishedRun, requireRun } from "../store/runs.ts";
import { summarizeRun } from "../inspect/summary.ts";
import { CliError, withStore } from "./common.ts";
import { budgetExit, parseBudget, runCli } from "./run.ts";

/** Look up which pipeline a run belongs to, then continue it. */
export async function resumeCli(runId: string, options: { json?: boolean; pipeline?: string; budget?: number; env?: NodeJS.ProcessEnv; superseded?: "refuse" | "allow" } = {}) {
  // Closed before the run goes on: runCli opens its own store.
  const run = await withStore(options.env, async (db) => {
    const found = await requireRun(db, runId);
    // A run's budget is all it may spend, what it spent included: one below that would stop it at once.
    if (options.budget !== undefined) {
      const spent = (await summarizeRun(db, runId)).costUsd;
      if (options.budget < spent) throw new CliError(`--budget $${options.budget.toFixed(4)} is less than the $${spent.toFixed(4)} run ${runId} has spent already; a run's budget is all it may spend, what it spent included`);
    }
    // A run stopped, then overtaken by a newer run of the pipeline that finished (its input changed
    // meanwhile: a new snapshot, a rewritten file), would write what it computed over what that run
    // committed, and the source's cursor has moved past its rows: `sluice resume` asks first.
    const newer = options.superseded === "refuse" && found.status !== "finished" ? await newerFinishedRun(db, found) : undefined;
    if (newer) {
      throw new CliError(
        `run ${runId} is older than run ${newer.id} of ${found.pipeline}, which has finished since: resuming it could write what it computed over what ${newer.id} committed. Start a new run over the input as it is now, or \`sluice resume ${runId} --force\` if their items do not overlap`,
      );
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
    .option("--force", "resume even when a newer run of the pipeline has finished since (it may write older values over that run's)")
    .action(async (runId: string, opts: { json?: boolean; pipeline?: string; budget?: number; force?: boolean }) => {
      budgetExit(await resumeCli(runId, { ...opts, superseded: opts.force ? "allow" : "refuse" }));
    });
}
