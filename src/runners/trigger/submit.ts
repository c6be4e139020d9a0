import { configure, idempotencyKeys, tasks } from "@trigger.dev/sdk";
import { SluiceError } from "../../core/errors.ts";
import type { PipelineDef } from "../../core/types.ts";
import { createOrContinueRun, ensureLoaded, openRun, planStages, type ProviderSet } from "../../engine/index.ts";
import { openDatabase, type Database } from "../../store/index.ts";
import { runTags } from "./observe.ts";
import { orchestratorTaskId } from "./plan.ts";

export interface SubmitRunOptions {
  /** The Postgres the deployed tasks use (their `DATABASE_URL`). */
  db: Database;
  pipeline: PipelineDef;
  /** Read here, on the submitting machine: the workers only see the store. */
  inputPath: string;
  /** Start a new run even if an unfinished one exists for this input. */
  fresh?: boolean;
  /** Accept embedded PGlite: only when the tasks run in this very process (tests). */
  allowEmbedded?: boolean;
  /** The run's budget in USD, recorded with it: every task run of the run reserves against it. */
  budgetUsd?: number;
  /**
   * The run's deadline from its start (`6h`), recorded with it: every task run
   * of the run reads it, and an `auto` stage's mode is chosen by it.
   */
  deadline?: string;
  /** What the orchestrator's trigger is keyed by (default: the run id): a sensor keys it by its new cursor. */
  idempotencyKey?: string[];
  /** Recorded in the run's options (a sensor's source and cursor range). */
  runOptions?: Record<string, unknown>;
}

export interface SubmittedRun {
  runId: string;
  continued: boolean;
  rowsRead: number;
  /** The Trigger.dev run of the pipeline's orchestrator. */
  triggerRunId: string;
}

/** Loading a source calls no model; a provider asked for here is a bug. */
const NO_PROVIDERS: ProviderSet = {
  defaultProvider: "none",
  get(name) {
    throw new SluiceError(`submitting a run needs no provider (asked for ${name})`);
  },
  cost: () => 0,
};

/**
 * Run a pipeline on Trigger.dev from a backend or a laptop: create (or
 * continue) the run in the shared store, load the input into it, and trigger
 * the pipeline's orchestrator with the run id. The trigger is keyed by the
 * run id, so submitting the same run twice starts one orchestrator.
 * Needs `TRIGGER_SECRET_KEY` (and `TRIGGER_API_URL` for a self-hosted instance).
 *
 * @example
 * const db = await openDatabase({ url: process.env.DATABASE_URL });
 * const { runId, triggerRunId } = await submitRun({ db, pipeline: ticketTriage, inputPath: "examples/data/tickets.csv" });
 */
export async function submitRun(options: SubmitRunOptions): Promise<SubmittedRun> {
  if (options.db.kind === "pglite" && !options.allowEmbedded) {
    throw new SluiceError("the Trigger.dev runner needs a Postgres database the workers can reach: set DATABASE_URL");
  }
  const { db, pipeline, inputPath } = options;
  const { run, continued } = await createOrContinueRun(db, pipeline, planStages(pipeline), inputPath, { ...options.runOptions, fresh: options.fresh ?? false, runner: "trigger" });
  const { ctx } = await openRun({ db, pipeline, providers: NO_PROVIDERS, runId: run.id, budgetUsd: options.budgetUsd, deadline: options.deadline });
  const rowsRead = await ensureLoaded(ctx, run);
  const idempotencyKey = await idempotencyKeys.create(options.idempotencyKey ?? [run.id, "orchestrate"], { scope: "global" });
  const handle = await tasks.trigger(orchestratorTaskId(pipeline.id), { runId: run.id }, { idempotencyKey, tags: runTags(run.id, pipeline.id) });
  return { runId: run.id, continued, rowsRead, triggerRunId: handle.id };
}

/**
 * Submit a run with everything taken from the environment, as a CLI would:
 * `DATABASE_URL` (the Postgres the deployed tasks use), `TRIGGER_SECRET_KEY`
 * (the environment's API key) and, for a self-hosted instance, `TRIGGER_API_URL`.
 *
 * @example
 * const { runId, triggerRunId } = await submitFromEnv(ticketTriage, "examples/data/tickets.csv");
 */
export async function submitFromEnv(pipeline: PipelineDef, inputPath: string, options: { fresh?: boolean; budgetUsd?: number; deadline?: string; env?: NodeJS.ProcessEnv } = {}): Promise<SubmittedRun> {
  const env = options.env ?? process.env;
  if (!env.DATABASE_URL) {
    throw new SluiceError("the Trigger.dev runner needs DATABASE_URL: the Postgres database your deployed tasks use (their DATABASE_URL)");
  }
  const secretKey = env.TRIGGER_SECRET_KEY;
  if (!secretKey) {
    throw new SluiceError("set TRIGGER_SECRET_KEY to the API key of the Trigger.dev environment to run in (tr_dev_... or tr_prod_..., from the dashboard's API keys page)");
  }
  configure({ secretKey, baseURL: env.TRIGGER_API_URL || undefined });
  const db = await openDatabase({ url: env.DATABASE_URL, prepare: env.SLUICE_PG_PREPARE !== "false" });
  try {
    return await submitRun({ db, pipeline, inputPath, fresh: options.fresh, budgetUsd: options.budgetUsd, deadline: options.deadline });
  } finally {
    await db.close();
  }
}
