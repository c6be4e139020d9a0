import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cliEnv, lastJson, ROOT, runCli, startCli, tempDataDir } from "./cli.ts";
import { demoSlice } from "./data.ts";

/** Habits a user brings: an unknown command is an error, `ls` lists the pipelines, `.env` is read (and what it sets too late is said). */
const BIN = join(ROOT, "bin", "sluice.mjs");

describe("the CLI's habits", () => {
  it("refuses an unknown command even with --help, with the commands it knows", async () => {
    const out = await runCli(["estimat", "--help"], cliEnv());
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^sluice: unknown command "estimat" \(commands: run, ls, /);
    expect(out.stdout).toBe("");
  }, 60_000);

  it("asks for what is missing from a command, and refuses what it does not know", async () => {
    const none = await runCli(["run"], cliEnv());
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/missing required argument 'pipeline'/);
    const noInput = await runCli(["run", "ticket-triage"], cliEnv());
    expect(noInput.code).toBe(1);
    expect(noInput.stderr).toBe("sluice: name the items to run ticket-triage over: sluice run ticket-triage --input <file> (CSV or JSONL)\n");
    // A word dlq does not know before a run id is not taken for the run id.
    const dlq = await runCli(["dlq", "frob", "run_x"], cliEnv());
    expect(dlq.code).toBe(1);
    expect(dlq.stderr).toBe('sluice: sluice dlq takes a run id, or `retry <runId>`; got "frob run_x"\n');
  }, 60_000);

  it("lists the pipelines in pipelines/ with their stages, versions and targets", async () => {
    const out = await runCli(["ls", "--json"], cliEnv());
    expect(out.code, out.stderr).toBe(0);
    const listed = lastJson<{ id: string; startedBy: string; stages: { id: string; kind: string; version: string; model?: string; target?: string }[] }[]>(out.stdout);
    expect(listed.map((p) => p.id)).toEqual(["crm-enrichment", "ticket-triage"]);
    const demo = listed.find((p) => p.id === "ticket-triage");
    expect(demo!.stages.map((s) => s.id)).toEqual(["filter", "classify", "extract", "validate", "commit"]);
    expect(demo!.stages.every((s) => /^[0-9a-f]{12}$/.test(s.version))).toBe(true);
    expect(demo!.stages.find((s) => s.id === "commit")!.target).toBe("ticket_triage");
    expect(demo!.startedBy).toBe("on demand");
    const crm = listed.find((p) => p.id === "crm-enrichment")!;
    expect(crm.startedBy).toBe("sluice watch: onNewRows (crm_companies, cursor updated_at)");
    expect(crm.stages.map((s) => [s.id, s.model ?? null])).toEqual([["triage", "claude-haiku-4-5"], ["enrich", "claude-sonnet-4"], ["validate", null], ["commit", null]]);
  }, 60_000);

  it("finishes its work when the reader of its output goes away (a pipe into head), printing nothing more", async () => {
    const env = cliEnv({ SLUICE_DATA_DIR: tempDataDir() });
    // The reader is gone before the first line: every write meets a closed pipe.
    const gone = startCli(["run", "ticket-triage", "--input", demoSlice(60)], env);
    gone.child.stdout!.destroy();
    const out = await gone.done;
    expect(out.stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(out.code).toBe(0);
    const runs = lastJson<{ runId: string; status: string }[]>((await runCli(["status", "--json"], env)).stdout);
    expect(runs.map((r) => r.status)).toEqual(["finished"]);
    const run = lastJson<{ items: { byStatus: Record<string, number> } }>((await runCli(["status", runs[0]!.runId, "--json"], env)).stdout);
    expect(run.items.byStatus.committed).toBeGreaterThan(0);
  }, 240_000);

  it("says, when interrupted, which run to resume", async () => {
    const env = cliEnv({ SLUICE_DATA_DIR: tempDataDir() });
    const running = startCli(["run", "ticket-triage", "--input", demoSlice(2_000)], env);
    let runId: string | undefined;
    while (!runId) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      runId = /started run (run_\w+)/.exec(running.stderrSoFar())?.[1];
    }
    running.child.kill("SIGINT");
    const out = await running.done;
    expect(out.code).toBe(1);
    expect(out.stderr.trim().split("\n").at(-1)).toBe(`sluice: interrupted; \`sluice resume ${runId}\` (or the same command again) continues run ${runId}`);
    // Listed as stopped, not as running: no live worker has it.
    const listed = await runCli(["status"], env);
    expect(listed.stdout.split("\n")[0]).toMatch(/^run\s+pipeline\s+status\s+rows read\s+cost\s+started$/);
    expect(listed.stdout).toMatch(new RegExp(`^${runId}\\s+ticket-triage\\s+stopped \\(resume it\\)\\s`, "m"));
    expect(lastJson<{ runId: string; status: string; live?: boolean }[]>((await runCli(["status", "--json"], env)).stdout)).toEqual([expect.objectContaining({ runId, status: "running", live: false })]);
    // Overtaken by a newer run of the pipeline that finished (a changed input): resuming the old one is refused, saying why.
    const newer = await runCli(["run", "ticket-triage", "--input", demoSlice(20), "--json"], env);
    expect(newer.code, newer.stderr).toBe(0);
    const newerId = lastJson<{ runId: string }>(newer.stdout).runId;
    const stale = await runCli(["resume", runId], env);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain(`sluice: run ${runId} is older than run ${newerId} of ticket-triage, which has finished since`);
  }, 180_000);

  it("reads .env from the working directory; variables already set win", () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-dotenv-"));
    writeFileSync(join(dir, ".env"), `SLUICE_DATA_DIR=${join(dir, "from-dotenv")}\n`);
    const env = cliEnv({ SLUICE_DATA_DIR: undefined });
    const fromFile = spawnSync(process.execPath, [BIN, "status"], { cwd: dir, env, encoding: "utf8" });
    expect(fromFile.status, fromFile.stderr).toBe(0);
    expect(existsSync(join(dir, "from-dotenv"))).toBe(true);
    const explicit = spawnSync(process.execPath, [BIN, "status"], { cwd: dir, env: { ...env, SLUICE_DATA_DIR: join(dir, "explicit") }, encoding: "utf8" });
    expect(explicit.status, explicit.stderr).toBe(0);
    expect(existsSync(join(dir, "explicit"))).toBe(true);
  }, 240_000);

  it("says when .env sets what only a process's start can set, unless the environment already has it", () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-dotenv-late-"));
    mkdirSync(join(dir, "pipelines"));
    writeFileSync(join(dir, ".env"), "MALLOC_ARENA_MAX=1\nSLUICE_CONCURRENCY=4\n");
    const env = cliEnv({ MALLOC_ARENA_MAX: undefined, NODE_OPTIONS: undefined, GLIBC_TUNABLES: undefined });
    const ls = ["ls"];
    const late = spawnSync(process.execPath, [BIN, ...ls], { cwd: dir, env, encoding: "utf8" });
    expect(late.status, late.stderr).toBe(0);
    expect(late.stderr).toBe(
      'sluice [warn] .env sets `MALLOC_ARENA_MAX`, read only as a process starts: too late for this one; set it in the shell instead (README, "Running where memory is tight")\n',
    );
    writeFileSync(join(dir, ".env"), "MALLOC_ARENA_MAX=1\nNODE_OPTIONS=--max-semi-space-size=4\n");
    const both = spawnSync(process.execPath, [BIN, ...ls], { cwd: dir, env, encoding: "utf8" });
    expect(both.stderr).toMatch(/^sluice \[warn\] \.env sets `MALLOC_ARENA_MAX` and `NODE_OPTIONS`, read only as a process starts: too late for this one; set them in the shell/);
    // Set where it takes effect, the line in .env changes nothing and is not mentioned.
    const set = spawnSync(process.execPath, [BIN, ...ls], { cwd: dir, env: { ...env, MALLOC_ARENA_MAX: "1", NODE_OPTIONS: "--max-semi-space-size=4" }, encoding: "utf8" });
    expect(set.status, set.stderr).toBe(0);
    expect(set.stderr).toBe("");
  }, 120_000);
});
