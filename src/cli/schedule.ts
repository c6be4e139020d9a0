import { join } from "node:path";
import { Command } from "commander";
import type { PipelineDef } from "../core/types.ts";
import { pipelineFiles } from "../preset/pipelines.ts";
import { limitsFromEnv, planTriggerTasks, type PipelineTaskPlan } from "../runners/trigger/plan.ts";
import { CliError, loadPipeline, printJson } from "./common.ts";

export interface ScheduleListing {
  pipeline: string;
  schedule: { cron: string; timezone: string } | null;
  after: string | null;
  /** Pipelines started when this one's commit stage finishes. */
  downstream: string[];
  tasks: {
    orchestrator: string;
    schedule: string | null;
    /** The scheduled task that starts an `onNewRows` pipeline once per new cursor value, or an `onNewFiles` one once per new file. */
    sensor: string | null;
    /** What the sensor task looks for: rows past the cursor, or files not read. */
    senses: "rows" | "files" | null;
    stages: { stage: string; task: string; concurrency: string }[];
  };
}

/**
 * What a Trigger.dev deploy would register for the pipelines in
 * `<cwd>/pipelines/`: scheduled tasks with their cron and timezone, `after`
 * links, and every task id. Nothing is registered; `sluice run` ignores
 * schedules (locally, `sluice watch` runs them).
 *
 * @example
 * const listing = await listSchedules(process.cwd(), process.env);
 * listing.filter((p) => p.schedule).map((p) => p.tasks.schedule);
 */
export async function listSchedules(cwd = process.cwd(), env: NodeJS.ProcessEnv = process.env): Promise<ScheduleListing[]> {
  const pipelines = await loadAllPipelines(cwd);
  let plans: PipelineTaskPlan[];
  try {
    plans = planTriggerTasks(pipelines, limitsFromEnv(env), env.SLUICE_DEFAULT_PROVIDER || undefined);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  return plans.map((plan) => ({
    pipeline: plan.pipelineId,
    schedule: plan.schedule ? { cron: plan.schedule.cron, timezone: plan.schedule.timezone } : null,
    after: plan.after ?? null,
    downstream: plan.downstream,
    tasks: {
      orchestrator: plan.orchestratorTaskId,
      schedule: plan.schedule?.taskId ?? null,
      sensor: plan.sensor?.taskId ?? null,
      senses: plan.sensor?.watches ?? null,
      stages: plan.stages.map((s) => ({
        stage: s.stageId,
        task: s.taskId,
        concurrency: s.concurrency.kind === "provider" ? `${s.concurrency.total} (shared ${s.concurrency.limit})` : String(s.concurrency.total),
      })),
    },
  }));
}

/** Every pipeline in `<cwd>/pipelines/` (the files `pipelineFiles` lists, as the Trigger.dev entry bundles them). */
export async function loadAllPipelines(cwd: string): Promise<PipelineDef[]> {
  let files: string[];
  try {
    files = pipelineFiles(join(cwd, "pipelines"));
  } catch {
    throw new CliError(`no pipelines/ folder in ${cwd}`);
  }
  const pipelines: PipelineDef[] = [];
  for (const file of files) pipelines.push(await loadPipeline(file, cwd));
  return pipelines;
}

/** The human listing: one block per pipeline. */
export function formatSchedules(listing: ScheduleListing[]): string {
  const lines: string[] = [];
  for (const p of listing) {
    const when = [p.schedule ? `cron "${p.schedule.cron}" (${p.schedule.timezone})` : undefined, p.after ? `after ${p.after} commits` : undefined, p.tasks.sensor ? (p.tasks.senses === "files" ? "when new files arrive" : "when new rows arrive") : undefined].filter(Boolean);
    lines.push(`${p.pipeline}: ${when.length ? when.join(", ") : "on demand only"}`);
    if (p.tasks.schedule) lines.push(`  scheduled task  ${p.tasks.schedule}`);
    if (p.tasks.sensor) lines.push(`  sensor task     ${p.tasks.sensor} (every minute: a run per new ${p.tasks.senses === "files" ? "file fingerprint" : "cursor value"})`);
    lines.push(`  orchestrator    ${p.tasks.orchestrator}`);
    const stageWidth = Math.max(...p.tasks.stages.map((s) => s.stage.length));
    const taskWidth = Math.max(...p.tasks.stages.map((s) => s.task.length));
    for (const s of p.tasks.stages) lines.push(`  stage ${s.stage.padEnd(stageWidth)}  ${s.task.padEnd(taskWidth)}  concurrency ${s.concurrency}`);
    if (p.downstream.length) lines.push(`  then starts     ${p.downstream.join(", ")}`);
  }
  lines.push("", "Registered on `npx trigger.dev deploy` (or `dev`); locally, `sluice watch` runs schedules and sensors (`sluice run` ignores them).");
  return lines.join("\n");
}

export function scheduleCommand(): Command {
  const command = new Command("schedule");
  command
    .command("list")
    .description("show the scheduled tasks, `after` links and task ids a Trigger.dev deploy would register")
    .option("--json", "print the listing as one JSON object on the last stdout line")
    .exitOverride()
    .action(async (opts: { json?: boolean }) => {
      const listing = await listSchedules();
      if (opts.json) printJson({ pipelines: listing });
      else process.stdout.write(`${formatSchedules(listing)}\n`);
    });
  return command;
}
