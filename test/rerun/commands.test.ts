import { CommanderError } from "commander";
import { beforeAll, describe, expect, it } from "vitest";
import { compareCli, compareCommand } from "../../src/cli/compare.ts";
import { diffCli, diffCommand } from "../../src/cli/diff.ts";
import { buildProgram } from "../../src/cli/main.ts";
import { rerunCli, rerunCommand } from "../../src/cli/rerun.ts";
import { resumeCli } from "../../src/cli/resume.ts";
import { versionsCli, versionsCommand } from "../../src/cli/versions.ts";
import type { CompareResult } from "../../src/inspect/compare.ts";
import type { RunSummary } from "../../src/inspect/summary.ts";
import type { StageVersionInfo, VersionOutput } from "../../src/inspect/versions.ts";
import { runPipeline } from "../../src/runners/local/index.ts";
import { openDatabase } from "../../src/store/index.ts";
import { tempDataDir } from "../e2e/cli.ts";
import { demoSlice } from "../e2e/data.ts";
import { captureStdout, demo, EXTRACT_SYSTEM_V2, pricedInProcess, writeDemoVariant } from "./helpers.ts";

/** The four commands' options and output, called in-process against an on-disk store. */
const dir = tempDataDir();
const env = { SLUICE_DATA_DIR: dir, SLUICE_PROVIDER: "inprocess" };
let base: RunSummary;

beforeAll(async () => {
  const db = await openDatabase({ dataDir: dir });
  try {
    base = await runPipeline({ db, pipeline: demo, providers: pricedInProcess().providers }, demoSlice(30));
  } finally {
    await db.close();
  }
});

async function parseError(command: ReturnType<typeof rerunCommand>, args: string[]): Promise<string> {
  let message = "";
  command.exitOverride().configureOutput({ writeErr: (s) => (message += s), writeOut: () => {} });
  await expect(command.parseAsync(args, { from: "user" })).rejects.toBeInstanceOf(CommanderError);
  return message;
}

describe("rerun, versions, diff and compare commands", () => {
  it("are commands of the sluice CLI", () => {
    const names = buildProgram().commands.map((c) => c.name());
    expect(names).toEqual(expect.arrayContaining(["rerun", "versions", "diff", "compare"]));
  });

  it("require their options", async () => {
    expect(await parseError(rerunCommand(), ["ticket-triage"])).toMatch(/--stage/);
    expect(await parseError(compareCommand(), ["ticket-triage", "--stage", "extract"])).toMatch(/--sample/);
    expect(await parseError(diffCommand(), ["run_a"])).toMatch(/runB/);
  });

  it("versions prints the history, and --show prints an old version's outputs", async () => {
    const { value, stdout } = await captureStdout(() => versionsCli({ pipeline: "ticket-triage", env }));
    const versions = value as StageVersionInfo[];
    expect(versions.map((v) => v.stage)).toEqual(demo.stages.map((s) => s.id));
    expect(stdout).toContain(`* ${base.stages[2]!.version}  first ran`);

    const shown = await captureStdout(() => versionsCli({ pipeline: "ticket-triage", stage: "extract", show: base.stages[2]!.version.slice(0, 6), limit: 3, json: true, env }));
    const rows = JSON.parse(shown.stdout.trim()) as VersionOutput[];
    expect(rows).toHaveLength(3);
    expect(rows.every((r) => r.runId === base.runId && typeof r.output === "object")).toBe(true);

    await expect(versionsCli({ pipeline: "ticket-triage", stage: "nope", env })).rejects.toThrow(/no stage "nope"/);
    await expect(versionsCli({ pipeline: "ticket-triage", stage: "extract", show: "ffffff", env })).rejects.toThrow(/no outputs of extract version ffffff/);
  });

  it("rerun from a pipeline file records the file, so resume loads it again", async () => {
    const file = writeDemoVariant("extract", { prompt: { system: EXTRACT_SYSTEM_V2 } });
    const rerun = (await captureStdout(() => rerunCli({ pipeline: file, stage: "extract", json: true, env }))).value;
    // As after an interrupted rerun: resumed with no --pipeline, it is the file's pipeline (not pipelines/ticket-triage.ts, whose extract differs).
    const resumed = (await captureStdout(() => resumeCli(rerun.runId, { json: true, env }))).value;
    expect(resumed.runId).toBe(rerun.runId);
    expect(resumed.status).toBe("finished");
  });

  it("diff of a run with itself finds nothing changed", async () => {
    const { value, stdout } = await captureStdout(() => diffCli({ runA: base.runId, runB: base.runId, env }));
    expect(value.final.changed).toBe(0);
    expect(value.stages.every((s) => s.outputChanged === 0 && s.gateChanged === 0 && s.stateChanged === 0)).toBe(true);
    expect(stdout).toContain("final state changed for 0 items: none");
    await expect(diffCli({ runA: base.runId, runB: "run_missing", env })).rejects.toThrow(/no run run_missing/);
  });

  it("compare prints its verdict, or one JSON object with --json", async () => {
    const { value, stdout } = await captureStdout(() => compareCli({ pipeline: "ticket-triage", stage: "classify", sample: 5, json: true, env }));
    expect(JSON.parse(stdout.trim().split("\n").at(-1)!)).toEqual(JSON.parse(JSON.stringify(value as CompareResult)));
    expect((value as CompareResult).agreement.rate).toBe(1);
  });
});

