import { dirname, join } from "node:path";
import { setMaxListeners } from "node:events";
import type { PipelineDef } from "../core/types.ts";
import type { EngineOptions } from "../engine/context.ts";
import type { RunSummary } from "../inspect/summary.ts";
import { createProviders } from "../preset/providers.ts";
import type { LocalRunOptions } from "../runners/local/index.ts";
import type { Database } from "../store/database.ts";
import { CliError, printJson } from "./common.ts";
import { createCliLogger } from "./logger.ts";
import { progressReporter } from "./progress.ts";
import { formatSummary } from "./format.ts";

/** Engine tuning from the environment: `SLUICE_CONCURRENCY`, `SLUICE_CHUNK_SIZE`, `SLUICE_MAX_ATTEMPTS`, `SLUICE_BATCH_POLL_MS`, `SLUICE_LEASE_MS`. */
export function engineOptionsFromEnv(env: NodeJS.ProcessEnv): Partial<EngineOptions> {
  // A value set is a whole number of 1 or more, or the command stops before any run is recorded (it was silently ignored, or failed the run half way).
  const num = (name: string) => {
    const text = env[name]?.trim();
    if (!text) return undefined;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) throw new CliError(`${name} is a whole number of 1 or more, got "${env[name]}"`);
    return n;
  };
  const options: Partial<EngineOptions> = {};
  const set = <K extends keyof EngineOptions>(key: K, value: number | undefined) => value !== undefined && (options[key] = value as EngineOptions[K]);
  set("concurrency", num("SLUICE_CONCURRENCY"));
  set("chunkSize", num("SLUICE_CHUNK_SIZE"));
  set("maxAttempts", num("SLUICE_MAX_ATTEMPTS"));
  set("batchPollMs", num("SLUICE_BATCH_POLL_MS"));
  set("leaseMs", num("SLUICE_LEASE_MS"));
  set("outageLimitMs", num("SLUICE_OUTAGE_LIMIT_MS"));
  options.journalDir = journalDirFor(env);
  return options;
}

/**
 * Where the CLI journals answers as they arrive, so a killed run loses none
 * it had received: beside the embedded database, or with Postgres a folder
 * of `.sluice/journal` in the working directory per database (its host, port
 * and name; never its user or password), since a journal's answers belong to
 * the store its run was writing to: replayed into another, they would be
 * missing from the one the run resumes on, and paid for again.
 * `SLUICE_JOURNAL_DIR` to choose.
 */
export function journalDirFor(env: NodeJS.ProcessEnv): string {
  if (env.SLUICE_JOURNAL_DIR) return env.SLUICE_JOURNAL_DIR;
  if (!env.DATABASE_URL && env.SLUICE_DATA_DIR) return join(dirname(env.SLUICE_DATA_DIR), "journal");
  const journals = join(process.cwd(), ".sluice", "journal");
  return env.DATABASE_URL ? join(journals, databaseFolder(env.DATABASE_URL)) : journals;
}

/** A folder name for a Postgres database: `host-port-name`, from its URL without credentials. */
export function databaseFolder(url: string): string {
  let name = "postgres";
  try {
    const u = new URL(url);
    const db = decodeURIComponent(u.pathname.replace(/^\//, "")) || "postgres";
    name = `${u.hostname || u.searchParams.get("host") || "localhost"}-${u.port || "5432"}-${db}`;
  } catch {
    // Not a URL (a bare connection string): one folder for all such.
  }
  return name.replace(/[^A-Za-z0-9._-]/g, "_");
}

/**
 * Where table sources' snapshots go (`SLUICE_INCREMENTS_DIR` to choose):
 * beside the embedded database, or `.sluice/increments` in the working
 * directory with Postgres.
 */
export function incrementsDirFor(env: NodeJS.ProcessEnv): string {
  if (env.SLUICE_INCREMENTS_DIR) return env.SLUICE_INCREMENTS_DIR;
  if (!env.DATABASE_URL && env.SLUICE_DATA_DIR) return join(dirname(env.SLUICE_DATA_DIR), "increments");
  return join(process.cwd(), ".sluice", "increments");
}

export interface SessionOptions {
  db: Database;
  pipeline: PipelineDef;
  env: NodeJS.ProcessEnv;
  json?: boolean;
  /** Printed on stderr after the provider notice (what this command is about to do). */
  banner?: string;
  /** What to tell a user who pressed Ctrl-C: with the run's id once it is recorded. */
  interrupted: string | ((runId: string | undefined) => string);
}

/**
 * Everything `run`, `resume` and `rerun` share: providers (the simulator when
 * no key is set), progress on stderr, Ctrl-C handling, logging, engine
 * settings from the environment, and the summary at the end (human, or the
 * JSON contract as the last stdout line).
 */
export async function runSession<S = RunSummary>(
  options: SessionOptions,
  drive: (base: LocalRunOptions) => Promise<S>,
  report: (result: S) => { json: unknown; text: string } = (s) => ({ json: s, text: formatSummary(s as RunSummary) }),
): Promise<S> {
  const { env } = options;
  const preset = await createProviders(env);
  const progress = progressReporter({ tty: Boolean(process.stderr.isTTY) && !options.json, intervalMs: Number(env.SLUICE_PROGRESS_MS) || undefined });
  const controller = new AbortController();
  // Every in-flight provider call and backoff listens on this one signal.
  setMaxListeners(0, controller.signal);
  let started: string | undefined;
  const { interrupted } = options;
  const onSignal = () => controller.abort(new CliError(typeof interrupted === "string" ? interrupted : interrupted(started)));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    process.stderr.write(`${preset.notice}\nstore: ${options.db.description}\n${options.banner ? `${options.banner}\n` : ""}`);
    const summary = await drive({
      db: options.db,
      pipeline: options.pipeline,
      providers: preset.providers,
      events: { ...progress, runStarted: (run, continued) => ((started = run.id), progress.runStarted?.(run, continued)) },
      signal: controller.signal,
      logger: createCliLogger(env, progress.log),
      options: engineOptionsFromEnv(env),
    });
    progress.stop();
    const out = report(summary);
    if (options.json) printJson(out.json);
    else process.stdout.write(`\n${out.text}\n`);
    return summary;
  } finally {
    progress.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await preset.close();
  }
}
