import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { COMMANDS } from "../../src/cli/commands.ts";
import { cliEnv, ROOT } from "./cli.ts";

/**
 * The CLI loads only what the command it runs needs: the top help loads no
 * command at all, `status` loads the store but not the engine, the report
 * renderer, the console, the schema checker or a TypeScript loader. Checked by recording every
 * module the process loads (test/fixtures/record-imports.mjs).
 */
const BIN = join(ROOT, "bin", "sluice.mjs");
const RECORDER = join(ROOT, "test", "fixtures", "record-imports.mjs");

function importsOf(args: string[], env: NodeJS.ProcessEnv): { status: number | null; stdout: string; stderr: string; urls: string[] } {
  const out = join(mkdtempSync(join(tmpdir(), "sluice-imports-")), "imports.txt");
  const res = spawnSync(process.execPath, ["--import", RECORDER, BIN, ...args], { cwd: ROOT, env: { ...env, SLUICE_IMPORTS_OUT: out }, encoding: "utf8" });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr, urls: readFileSync(out, "utf8").split("\n").filter(Boolean) };
}

const inPackage = (urls: string[], prefix: string) => urls.filter((u) => u.startsWith(`file://${ROOT}/${prefix}`));
const fromDependency = (urls: string[], name: string) => urls.filter((u) => u.includes(`/node_modules/${name}/`));

describe("CLI start-up", () => {
  it("lists every command in the top help without loading any", () => {
    const res = importsOf(["--help"], cliEnv());
    expect(res.status, res.stderr).toBe(0);
    for (const c of COMMANDS) expect(res.stdout).toContain(`  ${c.name} `);
    // The compiled CLI ran (not the TypeScript sources), and nothing beyond its entry and registry.
    expect(inPackage(res.urls, "dist/src/cli/")).toEqual(expect.arrayContaining([expect.stringMatching(/main\.js$/), expect.stringMatching(/commands\.js$/)]));
    expect(inPackage(res.urls, "src/")).toEqual([]);
    const commandModules = inPackage(res.urls, "dist/src/cli/").filter((u) => COMMANDS.some((c) => u.endsWith(`/${c.name}.js`)));
    expect(commandModules).toEqual([]);
    expect(inPackage(res.urls, "dist/src/engine/")).toEqual([]);
    expect(inPackage(res.urls, "dist/src/store/")).toEqual(inPackage(res.urls, "dist/src/store/index.js"));
    expect(fromDependency(res.urls, "tsx")).toEqual([]);
    expect(fromDependency(res.urls, "@electric-sql/pglite")).toEqual([]);
    expect(fromDependency(res.urls, "zod")).toEqual([]);
  }, 120_000);

  it("loads the store for status, and neither the engine, the report renderer, the console nor a TypeScript loader", () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), "sluice-e2e-")), "pglite");
    const res = importsOf(["status"], cliEnv({ SLUICE_DATA_DIR: dataDir }));
    expect(res.status, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/no runs yet/);
    expect(inPackage(res.urls, "dist/src/cli/status.js")).toHaveLength(1);
    expect(fromDependency(res.urls, "@electric-sql/pglite").length).toBeGreaterThan(0);
    expect(inPackage(res.urls, "dist/src/engine/")).toEqual([]);
    expect(inPackage(res.urls, "dist/src/report/")).toEqual([]);
    expect(inPackage(res.urls, "dist/src/ui/")).toEqual([]);
    expect(inPackage(res.urls, "dist/src/providers/")).toEqual([]);
    expect(fromDependency(res.urls, "tsx")).toEqual([]);
    expect(fromDependency(res.urls, "@observablehq/plot")).toEqual([]);
    // The schema checker is for pipelines and config files; status reads neither.
    expect(fromDependency(res.urls, "zod")).toEqual([]);
  }, 120_000);

  it("runs a user's TypeScript pipeline against the compiled sluice: one copy of sluice/core", () => {
    const res = importsOf(["ls", "--json"], cliEnv());
    expect(res.status, res.stderr).toBe(0);
    expect(inPackage(res.urls, "pipelines/ticket-triage.ts")).toHaveLength(1);
    expect(inPackage(res.urls, "dist/src/core/index.js")).toHaveLength(1);
    expect(inPackage(res.urls, "dist/stages/index.js")).toHaveLength(1);
    // pipelines/ imports sluice/core and sluice/stages, which resolve to these TypeScript files without the CLI's hook.
    expect(inPackage(res.urls, "src/")).toEqual([]);
    expect(inPackage(res.urls, "stages/")).toEqual([]);
  }, 120_000);

  it("loads each command under the name the top help gives it", async () => {
    for (const entry of COMMANDS) expect((await entry.load()).name()).toBe(entry.name);
  }, 120_000);
});
