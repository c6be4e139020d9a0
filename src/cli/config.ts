import { existsSync } from "node:fs";
import { join } from "node:path";
import type { SluiceConfig } from "../core/config.ts";
import { loadFailure } from "../core/errors.ts";
import { CliError } from "./common.ts";
import { importUserModule } from "./user-code.ts";

/** Where the CLI looks for a project's config, in this order; the first found is used. */
export const CONFIG_FILES = ["sluice.config.ts", "sluice.config.mts", "sluice.config.js", "sluice.config.mjs"];

/** The config's schema; zod is loaded only when a project has a config file. */
async function configSchema() {
  const { z } = await import("zod");
  const positiveInt = z.number().int().positive();
  return z.strictObject({
    store: z.strictObject({ url: z.string().min(1).optional(), dataDir: z.string().min(1).optional() }).optional(),
    concurrency: positiveInt.optional(),
    chunkSize: positiveInt.optional(),
    maxAttempts: positiveInt.optional(),
    budgetUsd: z.number().positive().optional(),
    simulator: z
      .strictObject({ config: z.string().min(1).optional(), inProcess: z.boolean().optional(), inProcessLatencyMs: z.number().nonnegative().optional() })
      .optional(),
  });
}

/** The environment variable each setting stands for, and its value as the variable would hold it. */
export function configAsEnv(config: SluiceConfig): Record<string, string> {
  const vars: Record<string, string | number | undefined> = {
    DATABASE_URL: config.store?.url,
    SLUICE_DATA_DIR: config.store?.dataDir,
    SLUICE_CONCURRENCY: config.concurrency,
    SLUICE_CHUNK_SIZE: config.chunkSize,
    SLUICE_MAX_ATTEMPTS: config.maxAttempts,
    SLUICE_BUDGET: config.budgetUsd,
    SLUICE_SIM_CONFIG: config.simulator?.config,
    SLUICE_PROVIDER: config.simulator?.inProcess ? "inprocess" : undefined,
    SLUICE_INPROCESS_LATENCY_MS: config.simulator?.inProcessLatencyMs,
  };
  return Object.fromEntries(Object.entries(vars).filter((e): e is [string, string | number] => e[1] !== undefined).map(([k, v]) => [k, String(v)]));
}

/** Read and check the project's config file in `cwd`; undefined when there is none. */
export async function loadProjectConfig(cwd: string): Promise<{ file: string; config: SluiceConfig } | undefined> {
  const name = CONFIG_FILES.find((f) => existsSync(join(cwd, f)));
  if (!name) return undefined;
  let mod: { default?: unknown };
  try {
    mod = await importUserModule<{ default?: unknown }>(join(cwd, name));
  } catch (err) {
    throw new CliError(`${name} failed to load: ${loadFailure(err)}`);
  }
  const parsed = (await configSchema()).safeParse(mod.default);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? issue.path.join(".") : "its default export";
    throw new CliError(`${name}: ${where}: ${issue.message}${mod.default === undefined ? " (export default defineConfig({ ... }))" : ""}`);
  }
  return { file: name, config: parsed.data };
}

/**
 * Fill the environment from the project's config: a variable already set (in
 * the shell, or by `.env`) is left as it is. Returns the variables it set.
 */
export async function applyProjectConfig(cwd: string, env: NodeJS.ProcessEnv): Promise<string[]> {
  const found = await loadProjectConfig(cwd);
  if (!found) return [];
  const set: string[] = [];
  for (const [name, value] of Object.entries(configAsEnv(found.config))) {
    if (env[name] !== undefined && env[name] !== "") continue;
    env[name] = value;
    set.push(name);
  }
  return set;
}
