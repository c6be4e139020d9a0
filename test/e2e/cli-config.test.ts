import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { applyProjectConfig, configAsEnv, loadProjectConfig } from "../../src/cli/config.ts";
import { budgetFromEnv } from "../../src/cli/run.ts";
import { cliEnv, ROOT } from "./cli.ts";

/** `sluice.config.ts`: a project's defaults, under `.env` and the environment. */
const BIN = join(ROOT, "bin", "sluice.mjs");

function project(config: string, dotenv?: string): string {
  const dir = mkdtempSync(join(tmpdir(), "sluice-config-"));
  writeFileSync(join(dir, "package.json"), `{ "type": "module" }\n`);
  writeFileSync(join(dir, "sluice.config.ts"), config);
  if (dotenv !== undefined) writeFileSync(join(dir, ".env"), dotenv);
  return dir;
}

describe("sluice.config.ts", () => {
  it("fills the environment with its settings, leaving variables already set as they are", async () => {
    const dir = project(`import type { SluiceConfig } from "${join(ROOT, "src/core/config.ts")}";
const config: SluiceConfig = { store: { dataDir: "/data/sluice" }, concurrency: 32, chunkSize: 200, budgetUsd: 2.5, simulator: { config: "sim.json", inProcess: true } };
export default config;
`);
    const env: NodeJS.ProcessEnv = { SLUICE_CONCURRENCY: "4", DATABASE_URL: "" };
    const set = await applyProjectConfig(dir, env);
    expect(env).toEqual({
      SLUICE_CONCURRENCY: "4",
      DATABASE_URL: "",
      SLUICE_DATA_DIR: "/data/sluice",
      SLUICE_CHUNK_SIZE: "200",
      SLUICE_BUDGET: "2.5",
      SLUICE_SIM_CONFIG: "sim.json",
      SLUICE_PROVIDER: "inprocess",
    });
    expect(set.sort()).toEqual(["SLUICE_BUDGET", "SLUICE_CHUNK_SIZE", "SLUICE_DATA_DIR", "SLUICE_PROVIDER", "SLUICE_SIM_CONFIG"]);
    expect(budgetFromEnv(env)).toBe(2.5);
  });

  it("is optional", async () => {
    const env: NodeJS.ProcessEnv = {};
    expect(await applyProjectConfig(mkdtempSync(join(tmpdir(), "sluice-config-")), env)).toEqual([]);
    expect(env).toEqual({});
  });

  it("refuses settings it does not know and values out of range, naming the setting", async () => {
    await expect(loadProjectConfig(project(`export default { concurrency: 0 };`))).rejects.toThrow(/^sluice\.config\.ts: concurrency: /);
    await expect(loadProjectConfig(project(`export default { openaiApiKey: "sk-1" };`))).rejects.toThrow(/^sluice\.config\.ts: its default export: .*openaiApiKey/);
    await expect(loadProjectConfig(project(`export default { store: { url: 5 } };`))).rejects.toThrow(/^sluice\.config\.ts: store\.url: /);
    await expect(loadProjectConfig(project(`export const concurrency = 4;`))).rejects.toThrow(/export default defineConfig/);
    await expect(loadProjectConfig(project(`export default {`))).rejects.toThrow(/^sluice\.config\.ts failed to load: /);
    expect(() => budgetFromEnv({ SLUICE_BUDGET: "lots" })).toThrow(/^SLUICE_BUDGET is a positive amount in USD, got "lots"$/);
  });

  it("maps each setting to its variable", () => {
    expect(configAsEnv({ store: { url: "postgres://h/db" }, maxAttempts: 3, simulator: { inProcess: false, inProcessLatencyMs: 0 } })).toEqual({
      DATABASE_URL: "postgres://h/db",
      SLUICE_MAX_ATTEMPTS: "3",
      SLUICE_INPROCESS_LATENCY_MS: "0",
    });
  });

  it("sets the CLI's store", () => {
    const dir = project(`const where: string = ${JSON.stringify(join("DIR", "from-config"))}.replace("DIR", process.cwd());\nexport default { store: { dataDir: where } };\n`);
    const res = spawnSync(process.execPath, [BIN, "status"], { cwd: dir, env: cliEnv({ SLUICE_DATA_DIR: undefined }), encoding: "utf8" });
    expect(res.status, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/no runs yet/);
    expect(existsSync(join(dir, "from-config"))).toBe(true);
  }, 240_000);

  it("gives way to .env and to the environment", () => {
    // An unusable budget stops `run` before anything is loaded, and the message says whose value it was.
    const dir = project(`export default { budgetUsd: 2 };\n`);
    const run = (env: NodeJS.ProcessEnv) => spawnSync(process.execPath, [BIN, "run", "any", "--input", "any.csv"], { cwd: dir, env: cliEnv(env), encoding: "utf8" });
    const fromEnv = run({ SLUICE_BUDGET: "from-env" });
    expect(fromEnv.status).toBe(1);
    expect(fromEnv.stderr).toBe(`sluice: SLUICE_BUDGET is a positive amount in USD, got "from-env"\n`);
    writeFileSync(join(dir, ".env"), "SLUICE_BUDGET=from-dotenv\n");
    const fromDotenv = run({ SLUICE_BUDGET: undefined });
    expect(fromDotenv.status).toBe(1);
    expect(fromDotenv.stderr).toBe(`sluice: SLUICE_BUDGET is a positive amount in USD, got "from-dotenv"\n`);
    // With neither, the config's budget stands and the command goes on (to the missing pipeline).
    writeFileSync(join(dir, ".env"), "");
    const fromConfig = run({ SLUICE_BUDGET: undefined });
    expect(fromConfig.status).toBe(1);
    expect(fromConfig.stderr).toMatch(/^sluice: no pipeline "any"/);
  }, 240_000);

  it("stops the CLI with one line when it is wrong", () => {
    const dir = project(`export default { concurrency: "many" };\n`);
    const res = spawnSync(process.execPath, [BIN, "status"], { cwd: dir, env: cliEnv(), encoding: "utf8" });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/^sluice: sluice\.config\.ts: concurrency: [^\n]+\n$/);
    expect(res.stdout).toBe("");
  }, 120_000);

  it("says where a syntax error is, and leaves help and ls working", () => {
    const dir = project("export default {{{\n");
    const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: dir, env: cliEnv(), encoding: "utf8" });
    const broken = cli("status");
    expect(broken.status).toBe(1);
    expect(broken.stderr).toMatch(/^sluice: sluice\.config\.ts failed to load: Transform failed with 1 error: \S*sluice\.config\.ts:1:\d+: ERROR: [^\n]+\n$/);
    const help = cli("run", "--help");
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: sluice run/);
    // ls reads pipelines/, not the config: it says what it did not find, not the config's error.
    const ls = cli("ls");
    expect(ls.stderr).toMatch(/^sluice: no pipelines\/ folder in /);
  }, 120_000);
});
