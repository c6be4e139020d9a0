import { Command } from "commander";
import { prepareRerun, type PreparedRerun, type RerunRequest } from "../engine/rerun.ts";
import type { RunSummary } from "../inspect/summary.ts";
import { resumeRun, type LocalRunOptions } from "../runners/local/index.ts";
import { loadPipeline, withStore } from "./common.ts";
import { estimateRerunCli } from "./estimate.ts";
import { runSession } from "./session.ts";
import { budgetExit, budgetFromEnv, parseBudget, parseDeadline } from "./run.ts";

/** The run summary of a rerun, plus what it was a rerun of. */
export type RerunSummary = RunSummary & { rerun: { baseRunId: string; stage: string; only: boolean } };

/**
 * Rerun one stage with the local runner: a new run over the base run's items
 * that reuses every unchanged output and recomputes the named stage (and,
 * unless `only`, whatever changed downstream of it).
 *
 * @example
 * const { summary } = await rerunPipeline({ db, pipeline, providers }, { stage: "extract" });
 * summary.stages.find((s) => s.id === "classify")!.providerCalls; // 0
 */
export async function rerunPipeline(opts: LocalRunOptions, request: RerunRequest): Promise<{ summary: RerunSummary; prepared: PreparedRerun }> {
  const prepared = await prepareRerun(opts.db, opts.pipeline, request);
  return { summary: await driveRerun(opts, request, prepared), prepared };
}

async function driveRerun(opts: LocalRunOptions, request: RerunRequest, prepared: PreparedRerun): Promise<RerunSummary> {
  // The run is announced by describeRerun, not as a resumed run.
  const summary = await resumeRun({ ...opts, events: { ...opts.events, runStarted: undefined } }, prepared.run.id);
  return { ...summary, rerun: { baseRunId: prepared.base.id, stage: request.stage, only: Boolean(request.only) } };
}

/** One line per stage: what the rerun will do with it. */
export function describeRerun(prepared: PreparedRerun): string {
  const lines = [`${prepared.continued ? "continuing" : "started"} run ${prepared.run.id} (${prepared.run.pipeline}): rerun of ${prepared.base.id} from stage ${prepared.stages[prepared.stageIndex]!.id}`];
  for (const s of prepared.stages) {
    const changed = s.baseVersion !== s.version;
    const what =
      s.role === "upstream"
        ? "unchanged, outputs reused"
        : s.role === "skipped"
          ? "not run (--only)"
          : s.role === "beside" && !changed
            ? "on another branch, unchanged: only items whose inputs changed are computed"
          : !changed
            ? "unchanged: only items whose inputs changed are computed"
            : s.baseVersion
              ? `changed (${s.baseVersion} → ${s.version}): computed where no output of this version exists`
              : "new since the base run: computed";
    lines.push(`  ${s.id.padEnd(12)} ${what}`);
  }
  return lines.join("\n");
}

export interface RerunCliOptions extends RerunRequest {
  pipeline: string;
  json?: boolean;
  /** The rerun's budget in USD (`--budget`). */
  budget?: number;
  /** The rerun's deadline from its start (`--deadline 6h`). */
  deadline?: string;
  env?: NodeJS.ProcessEnv;
}

/** `sluice rerun`: prints progress on stderr and the same summary (or `--json` line) as `sluice run`. */
export async function rerunCli(options: RerunCliOptions): Promise<RerunSummary> {
  const env = options.env ?? process.env;
  const pipeline = await loadPipeline(options.pipeline);
  return withStore(env, async (db) => {
    // Planned before any provider is wired: a rerun that cannot start says why at once.
    // A pipeline file (not pipelines/<id>.ts) is recorded with the run: resuming an interrupted rerun loads it again.
    const request = { stage: options.stage, from: options.from, only: options.only, pipelineFile: /\.[cm]?[jt]s$/.test(options.pipeline) ? options.pipeline : undefined };
    const prepared = await prepareRerun(db, pipeline, request);
    return await runSession(
      {
        db,
        pipeline,
        env,
        json: options.json,
        banner: describeRerun(prepared),
        interrupted: `interrupted; run \`sluice resume ${prepared.run.id}\` (or the same rerun again) to continue`,
      },
      (base) => driveRerun({ ...base, budgetUsd: options.budget ?? budgetFromEnv(env), deadline: options.deadline }, request, prepared),
    );
  });
}

export function rerunCommand(): Command {
  return new Command("rerun")
    .argument("<pipeline>", "pipeline id (pipelines/<id>.ts) or path to a pipeline file")
    .requiredOption("-s, --stage <id>", "the stage to recompute with its current definition")
    .option("--from <runId>", "base run (default: the latest finished run of the pipeline)")
    .option("--only", "stop after the named stage: downstream stages and the commit target are left alone")
    .option("--json", "print the run summary as one JSON object on the last stdout line")
    .option("--dry-run", "print what the rerun would pay for (sluice estimate) and exit: nothing is paid or recorded")
    .option("--budget <usd>", "stop paying once the rerun has spent this much (USD); `resume --budget` with more goes on", parseBudget)
    .option("--deadline <duration>", "finish within this long from the rerun's start (6h, 90m): `auto` stages go by batch only when the provider's recent batches fit, and a late batch's rest goes realtime", parseDeadline)
    .action(async (pipeline: string, opts: { stage: string; from?: string; only?: boolean; json?: boolean; dryRun?: boolean; budget?: number; deadline?: string }) => {
      if (opts.dryRun) await estimateRerunCli({ pipeline, stage: opts.stage, from: opts.from, only: opts.only, deadline: opts.deadline, json: opts.json });
      else budgetExit(await rerunCli({ pipeline, stage: opts.stage, from: opts.from, only: opts.only, json: opts.json, budget: opts.budget, deadline: opts.deadline }));
    });
}
