import { parseDuration } from "../core/duration.ts";
import { existsSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { setFlagsFromString } from "node:v8";
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

/**
 * Embedded PGlite is Postgres compiled to WebAssembly, and V8 compiles it
 * twice: at once with its baseline compiler, then the functions that run hot
 * again with its optimizing one, on other threads, while the command runs.
 * A command that reads or writes some rows (`sluice status`, `review`,
 * `revert`, `cost`: a `brief` entry in `commands.ts`) exits before that
 * second compilation pays for itself: without it, `sluice status` used half
 * the CPU time and about 90 MB less memory, and a revert of the demo's 2,521
 * rows less than half the CPU time. So does a run over a small input
 * (`tuneForSmallRun`).
 *
 * The flag is the process's, and holds for what it compiles from then on: it
 * is set by the CLI's own process before its store opens, never where sluice
 * runs inside someone else's.
 */
export function baselineWebAssemblyOnly(): void {
  setFlagsFromString("--liftoff-only");
}

/**
 * Inputs up to this size make a small run (`tuneForSmallRun`). On the
 * baseline compiler alone, the demo's 5,192 tickets (2.7 MB) ran in
 * 16.3-17.8 s and 538 MB, against 19.1-20.6 s and 612 MB with the optimizing
 * compiler too; 15,000 tickets (7.9 MB) in 30.7 s against 34.3 s; but 50,000
 * (27 MB) in 45.5 s against 30.9 s.
 */
export const SMALL_RUN_MAX_BYTES = 8 * 1024 * 1024;

/**
 * How far the JavaScript heap may grow past what its last full collection
 * kept, in percent, in a small run. Left to itself, V8 lets it grow up to
 * four times that when collecting is cheap, as it is in a run, whose live
 * data its chunks bound: in the demo, 55-85 MB were live, yet the heap
 * reached 250 MB, and the process 515-543 MB. Held to 20%, the heap stayed
 * near 110 MB and the process at 363-376 MB, in about the same time
 * (17.6-20.4 s against 15.9-20.8 s, alternated runs). The price is more full
 * collections, which a larger run pays for in time: 8,000 tickets (4.3 MB)
 * ran in 20.3-22.3 s against 20.7-22.3 s, but 15,000 (7.9 MB) in 37.1-39.1 s
 * against 28.9-33.2 s (50% did no better: 35.9-38.6 s), and 100,000 with 50%
 * took 10% more time (60.1-61.4 s against 52.6-56.8 s) for 100 MB less. So
 * only inputs up to `SMALL_RUN_HEAP_MAX_BYTES` hold the heap; larger runs keep
 * V8's own growth.
 */
export const SMALL_RUN_HEAP_GROWTH_PERCENT = 20;
export const SMALL_RUN_HEAP_MAX_BYTES = 5 * 1024 * 1024;

/**
 * `sluice run` over a file: a small one (see `SMALL_RUN_MAX_BYTES`) runs on
 * the baseline WebAssembly compiler alone, and one of up to
 * `SMALL_RUN_HEAP_MAX_BYTES` with its heap held close to what it uses. Both
 * are settings of the CLI's own process, set before its store opens; never
 * where sluice runs inside someone else's.
 */
export function tuneForSmallRun(input: string): void {
  let size: number;
  try {
    size = statSync(input).size;
  } catch {
    return; // The run says what is wrong with its input.
  }
  if (size <= SMALL_RUN_MAX_BYTES) baselineWebAssemblyOnly();
  if (size <= SMALL_RUN_HEAP_MAX_BYTES) setFlagsFromString(`--heap-growing-percent=${SMALL_RUN_HEAP_GROWTH_PERCENT}`);
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
