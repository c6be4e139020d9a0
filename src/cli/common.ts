import { parseDuration } from "../core/duration.ts";
import { existsSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { SluiceError } from "../core/errors.ts";
import type { PipelineDef } from "../core/types.ts";
import { openDatabase, type Database } from "../store/index.ts";
import { prepareUserCode } from "./user-code.ts";

/** Thrown for anything a user must fix; main() prints its message on one line and exits non-zero. */
export class CliError extends SluiceError {
  override name = "CliError";
}

/**
 * Find and import a pipeline: a path to a `.ts` file, or a pipeline id looked
 * up as `pipelines/<id>.ts` under the working directory.
 */
export async function loadPipeline(nameOrPath: string, cwd = process.cwd()): Promise<PipelineDef> {
  const candidates = /\.[cm]?[jt]s$/.test(nameOrPath)
    ? [isAbsolute(nameOrPath) ? nameOrPath : resolve(cwd, nameOrPath)]
    : [join(cwd, "pipelines", `${nameOrPath}.ts`), join(cwd, "pipelines", `${nameOrPath}.js`)];
  const file = candidates.find((f) => existsSync(f));
  if (!file) throw new CliError(`no pipeline "${nameOrPath}": looked for ${candidates.map((c) => c.replace(`${cwd}/`, "")).join(" and ")}`);
  try {
    await prepareUserCode();
    // Loaded here, not at start: it brings the schema checker (zod), which commands that load no pipeline never need.
    const { importPipeline } = await import("../preset/pipelines.ts");
    return await importPipeline(file, file.replace(`${cwd}/`, ""));
  } catch (err) {
    // Not loadable, or not a pipeline: a message for the user, on one line.
    if (err instanceof SluiceError) throw new CliError(err.message);
    throw err;
  }
}

/** The store the CLI uses: Postgres when DATABASE_URL is set, else embedded PGlite under `.sluice/`. */
export async function openStore(env: NodeJS.ProcessEnv = process.env): Promise<Database> {
  try {
    return await openDatabase({ url: env.DATABASE_URL || undefined, dataDir: env.SLUICE_DATA_DIR || undefined, prepare: env.SLUICE_PG_PREPARE !== "false" });
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    const where = env.DATABASE_URL ? "the database at DATABASE_URL" : "the embedded database in .sluice/";
    throw new CliError(`cannot open ${where}: ${(err as Error).message.split("\n")[0]}`);
  }
}

/** Open the store for one command, and close it however the command ends. */
export async function withStore<T>(env: NodeJS.ProcessEnv | undefined, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await openStore(env);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** Print the machine-readable summary as the last stdout line. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** `--deadline <duration>`: 6h, 90m, 1h30m, 45s. */
export function parseDeadline(value: string): string {
  try {
    parseDuration(value, "--deadline");
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  return value;
}

export function parsePositiveInt(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new CliError(`${name} must be a positive integer, got "${value}"`);
  return n;
}
