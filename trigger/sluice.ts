import { defineSluiceTasks, limitsFromEnv } from "../src/runners/trigger/index.ts";
import { PIPELINES } from "./pipelines.ts";

/**
 * The Trigger.dev entry point: every pipeline becomes an orchestrator task, a
 * task per stage and, when it declares `schedule`, a scheduled task. Defined
 * at the top level so each import of this file (indexing, then every run)
 * defines the same task ids. At run time the tasks open `DATABASE_URL` and
 * wire providers from the environment, like `sluice run` does.
 */
export const sluice = defineSluiceTasks(PIPELINES, {
  limits: limitsFromEnv(process.env),
  defaultProvider: process.env.SLUICE_DEFAULT_PROVIDER || undefined,
});
