import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimulator, type Simulator } from "../../src/sim/index.ts";
import { cliEnv, lastJson, runCli, tempDataDir } from "./cli.ts";
import { demoSlice } from "./data.ts";
import { startUi } from "./ui.ts";

const OPENAI_KEY = "sk-proj-SLUICESECRETopenai0123456789abcdef";
const ANTHROPIC_KEY = "sk-ant-SLUICESECRETanthropic0123456789";

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
});
afterAll(async () => {
  await sim?.close();
});

describe("API keys never reach the database, logs, reports or the console", () => {
  it("leaves no trace of the keys after a run with provider errors", async () => {
    // Every third call fails, so error messages and dead letters are written too.
    sim.configure({ faults: { serverError: 0.3 } });
    const data = tempDataDir();
    const env = cliEnv({
      SLUICE_DATA_DIR: data,
      OPENAI_API_KEY: OPENAI_KEY,
      ANTHROPIC_API_KEY: ANTHROPIC_KEY,
      OPENAI_BASE_URL: sim.openaiBaseURL,
      ANTHROPIC_BASE_URL: sim.anthropicBaseURL,
      SLUICE_MAX_ATTEMPTS: "1",
      SLUICE_LOG_LEVEL: "debug",
    });
    const run = await runCli(["run", "ticket-triage", "--input", demoSlice(60), "--json"], env);
    expect(run.code, run.stderr).toBe(0);
    const summary = lastJson(run.stdout);
    expect(summary.items.byStatus.failed_terminal).toBeGreaterThan(0);
    const status = await runCli(["status", summary.runId], env);
    const dlq = await runCli(["dlq", summary.runId, "--json"], env);
    // A revoked key: the provider's 401 repeats the key in full, in every error
    // message. It stops the stage, and the run fails with the message as its reason.
    sim.configure({ faults: { serverError: 0 }, revokedKeys: [OPENAI_KEY] });
    const json = await runCli(["run", "ticket-triage", "--input", demoSlice(60), "--json", "--fresh"], { ...env, SLUICE_LOG_FORMAT: "json" });
    expect(json.code).toBe(1);
    expect(json.stderr).toMatch(/Incorrect API key provided: \[redacted\]/);
    const revokedRun = /sluice resume (run_\w+)/.exec(json.stderr)![1]!;
    const revokedStatus = await runCli(["status", revokedRun], env);
    expect(revokedStatus.stdout).toContain(revokedRun);

    // The HTML report and every kind of console page, served by a process that has the keys in its environment.
    const report = await runCli(["report", revokedRun, "--out", join(dirname(data), "report.html")], env);
    expect(report.code, report.stderr).toBe(0);
    const deadItem = lastJson<{ itemId: string }[]>(dlq.stdout)[0]!.itemId;
    const ui = await startUi(env);
    const pages: string[] = [];
    try {
      for (const path of ["runs", `runs/${summary.runId}`, `runs/${revokedRun}`, `runs/${summary.runId}/dead-letters`, `runs/${summary.runId}/items/${deadItem}`, `runs/${summary.runId}/items`, "dead-letters", "pipelines", "pipelines/ticket-triage"]) {
        const res = await fetch(`${ui.url}${path}`);
        expect(res.status, path).toBe(200);
        pages.push(await res.text());
      }
    } finally {
      await ui.stop();
    }
    // The pages really show the failures: the revoked run's reason, the dead letter's provider message.
    expect(pages[2]).toMatch(/Incorrect API key provided: \[redacted\]/);
    expect(pages[4]).toMatch(/the API at http:\/\/127.0.0.1|500/);

    const outputs = [run, status, dlq, json, revokedStatus, report].flatMap((r) => [r.stdout, r.stderr]).concat(pages).join("\n");
    // The runs really wrote output, error messages included.
    expect(outputs).toContain(summary.runId);
    expect(outputs).toMatch(/the API at http:\/\/127.0.0.1/);
    for (const key of [OPENAI_KEY, ANTHROPIC_KEY, "SLUICESECRET"]) {
      expect(outputs).not.toContain(key);
      for (const file of filesUnder(dirname(data))) {
        expect(readFileSync(file).includes(key), `${key} found in ${file}`).toBe(false);
      }
    }
  }, 240_000);
});
