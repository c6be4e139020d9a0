import { SluiceError } from "../../core/errors.ts";
import type { EngineOptions, Logger, ProviderSet } from "../../engine/index.ts";
import { createProviders } from "../../preset/providers.ts";
import { openDatabase, type Database, type PoolOptions } from "../../store/index.ts";
import { triggerLogger } from "./observe.ts";
import { DEFAULT_CALLS_PER_RUN, DEFAULT_CHUNK_SIZE } from "./plan.ts";

/**
 * What a task needs at run time: the shared store, providers and engine
 * options. A deployed worker builds them from its environment on first use
 * (`DATABASE_URL`, provider keys); a test or a custom host sets them with
 * {@link configureTriggerRunner}. Nothing here knows about pipelines: the
 * `trigger/` entry point hands them over explicitly.
 */
export interface TriggerRuntime {
  db: Database;
  providers: ProviderSet;
  /** Engine options for chunk execution (retries, calls in flight per run, lease). */
  engine: Partial<EngineOptions>;
  /** Items per stage-task run. */
  chunkSize: number;
  /** Runs per `batchTriggerAndWait` call; at most 1,000. */
  runsPerBatch: number;
  /**
   * Extra dispatch rounds for items left open (a chunk run that failed for
   * good, or items a provider batch handed back as retryable), before the
   * orchestrator gives up. Default 5, the engine's attempts per item.
   */
  maxSweeps: number;
  /** Input file per pipeline id, for runs started by a schedule or an `after` link. */
  inputs: Record<string, string>;
  logger?: Logger;
}

export type TriggerRuntimeOverrides = Partial<TriggerRuntime>;

let overrides: TriggerRuntimeOverrides = {};
let fromEnv: Promise<{ db: Database; providers: ProviderSet; close(): Promise<void> }> | undefined;

/**
 * Set what the tasks of this process use instead of what they would build
 * from the environment. Call again with `{}` to go back to the environment.
 *
 * @example
 * configureTriggerRunner({ db: (await memoryDatabase()).db, providers: singleProvider(createInProcessProvider()) });
 */
export function configureTriggerRunner(next: TriggerRuntimeOverrides): void {
  overrides = { ...next };
}

/**
 * The runtime for one task run. The database and providers built from the
 * environment are opened once per worker process and kept: Trigger.dev may
 * run many tasks in one process, and a pool per run would exhaust Postgres.
 */
export async function triggerRuntime(env: NodeJS.ProcessEnv = process.env): Promise<TriggerRuntime> {
  let db = overrides.db;
  let providers = overrides.providers;
  if (!db || !providers) {
    if (!fromEnv) {
      fromEnv = openFromEnv(env);
      // A failed open (database down) is not kept: the next run in this process tries again.
      fromEnv.catch(() => (fromEnv = undefined));
    }
    const built = await fromEnv;
    db ??= built.db;
    providers ??= built.providers;
  }
  return {
    db,
    providers,
    engine: { concurrency: DEFAULT_CALLS_PER_RUN, ...numberOption(env.SLUICE_TRIGGER_CALLS_PER_RUN, "concurrency"), ...overrides.engine },
    chunkSize: overrides.chunkSize ?? positiveInt(env.SLUICE_TRIGGER_CHUNK_SIZE) ?? DEFAULT_CHUNK_SIZE,
    runsPerBatch: Math.min(1000, overrides.runsPerBatch ?? positiveInt(env.SLUICE_TRIGGER_RUNS_PER_BATCH) ?? 1000),
    maxSweeps: overrides.maxSweeps ?? 5,
    inputs: { ...inputsFromEnv(env), ...overrides.inputs },
    // On a worker the engine's lines go to the SDK's logger, and so to the run's log in the dashboard.
    logger: overrides.logger ?? triggerLogger,
  };
}

/** Close what {@link triggerRuntime} opened from the environment (tests and scripts; workers just exit). */
export async function closeTriggerRuntime(): Promise<void> {
  const built = fromEnv;
  fromEnv = undefined;
  if (built) await (await built).close();
}

async function openFromEnv(env: NodeJS.ProcessEnv) {
  if (!env.DATABASE_URL) {
    // Embedded PGlite lives in one process's directory; chunk runs on other machines could not see it.
    throw new SluiceError("DATABASE_URL is not set: Trigger.dev tasks need the Postgres database every run shares (set it in the project's environment variables)");
  }
  const db = await openDatabase({ url: env.DATABASE_URL, prepare: env.SLUICE_PG_PREPARE !== "false", pool: workerPoolFromEnv(env) });
  const preset = await createProviders(env);
  return {
    db,
    providers: preset.providers,
    async close() {
      await preset.close();
      await db.close();
    },
  };
}

/**
 * A worker's Postgres pool. Trigger.dev runs each task run in a process of
 * its own, often hundreds at once against one server, so a worker keeps few
 * connections: 4 at most (a chunk run writes its answers in groups, beside a
 * heartbeat), closes one after 30 s unused, and replaces each after 10 min,
 * so connections a pooler, a failover or a restart dropped are not kept.
 * `SLUICE_PG_POOL_MAX`, `SLUICE_PG_IDLE_TIMEOUT` and `SLUICE_PG_MAX_LIFETIME`
 * (seconds) override them.
 *
 * @example
 * workerPoolFromEnv({ SLUICE_PG_POOL_MAX: "2" }); // { max: 2, idleTimeoutS: 30, maxLifetimeS: 600 }
 */
export function workerPoolFromEnv(env: Record<string, string | undefined>): Required<PoolOptions> {
  return {
    max: positiveInt(env.SLUICE_PG_POOL_MAX) ?? WORKER_POOL.max,
    idleTimeoutS: positiveInt(env.SLUICE_PG_IDLE_TIMEOUT) ?? WORKER_POOL.idleTimeoutS,
    maxLifetimeS: positiveInt(env.SLUICE_PG_MAX_LIFETIME) ?? WORKER_POOL.maxLifetimeS,
  };
}

/** Pool defaults for Trigger.dev workers (see {@link workerPoolFromEnv}). */
export const WORKER_POOL: Required<PoolOptions> = { max: 4, idleTimeoutS: 30, maxLifetimeS: 600 };

/**
 * `SLUICE_INPUT_TICKET_TRIAGE=/data/tickets.csv` gives pipeline `ticket-triage`
 * an input for scheduled runs (dashes in the id become underscores).
 */
export function inputsFromEnv(env: Record<string, string | undefined>): Record<string, string> {
  const inputs: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    const m = /^SLUICE_INPUT_([A-Z0-9_]+)$/.exec(name);
    if (m && value) inputs[m[1]!.toLowerCase().replace(/_/g, "-")] = value;
  }
  return inputs;
}

/** The input a pipeline id maps to, trying the id with dashes and with underscores. */
export function inputFor(runtime: TriggerRuntime, pipelineId: string): string | undefined {
  return runtime.inputs[pipelineId] ?? runtime.inputs[pipelineId.replace(/_/g, "-")];
}

function positiveInt(value: string | undefined): number | undefined {
  const n = Number(value);
  return value !== undefined && Number.isInteger(n) && n > 0 ? n : undefined;
}

function numberOption(value: string | undefined, key: keyof EngineOptions): Partial<EngineOptions> {
  const n = positiveInt(value);
  return n === undefined ? {} : { [key]: n };
}
