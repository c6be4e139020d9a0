import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimulator, type Simulator } from "../../src/sim/index.ts";
import { cliEnv, lastJson, runCli, tempDataDir } from "./cli.ts";
import { demoSlice } from "./data.ts";

const KEY = "sk-proj-REVOKEDinthistest0123456789abcdef";

let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
});
afterAll(async () => {
  await sim?.close();
});

describe("a stage-wide provider failure (a revoked key)", () => {
  it("stops the stage at once, keeps its items queued, fails the run with the reason, and resume goes on once the key works", async () => {
    const env = cliEnv({
      SLUICE_DATA_DIR: tempDataDir(),
      OPENAI_API_KEY: KEY,
      OPENAI_BASE_URL: sim.openaiBaseURL,
      ANTHROPIC_BASE_URL: sim.anthropicBaseURL,
    });
    const input = demoSlice(120);
    sim.configure({ revokedKeys: [KEY] });
    sim.reset();
    const failed = await runCli(["run", "ticket-triage", "--input", input, "--json"], env);

    // A one-line reason, with the provider's message and the key redacted, and what to do next.
    expect(failed.code).toBe(1);
    const reason = failed.stderr.trim().split("\n").at(-1)!;
    expect(reason).toMatch(/^sluice: stage classify stopped: openai: 401 Incorrect API key provided: \[redacted\]/);
    expect(failed.stderr).not.toContain(KEY);
    const runId = /sluice resume (run_\w+)/.exec(reason)![1]!;
    // Not one call per item: only those in flight when the first 401 came back (16 at a time per stage).
    const refused = sim.stats().unauthorized;
    expect(refused).toBeGreaterThan(0);
    expect(refused).toBeLessThanOrEqual(16);
    expect(sim.stats().billed).toBe(0);

    const status = await runCli(["status", runId, "--json"], env);
    expect(status.code, status.stderr).toBe(0);
    const stopped = lastJson<{ status: string; error?: string; items: { byStatus: Record<string, number> } }>(status.stdout);
    expect(stopped.status).toBe("failed");
    // The status says why, as the run's last line did, and the text form too.
    expect(stopped.error).toBe(reason.replace(/^sluice: /, ""));
    expect((await runCli(["status", runId], env)).stdout).toContain(`failed: ${stopped.error}`);
    // Nothing was dead-lettered for the key: the items wait for a working one.
    expect(stopped.items.byStatus.failed_terminal ?? 0).toBe(0);

    sim.configure({ revokedKeys: [] });
    const resumed = await runCli(["resume", runId, "--json"], env);
    expect(resumed.code, resumed.stderr).toBe(0);
    const done = lastJson<{ status: string; items: { byStatus: Record<string, number> } }>(resumed.stdout);
    expect(done.status).toBe("finished");

    // The same final states as a run that never met the revoked key.
    const clean = await runCli(["run", "ticket-triage", "--input", input, "--json", "--fresh"], { ...env, SLUICE_DATA_DIR: tempDataDir() });
    expect(clean.code, clean.stderr).toBe(0);
    expect(done.items.byStatus).toEqual(lastJson<{ items: { byStatus: Record<string, number> } }>(clean.stdout).items.byStatus);
  }, 180_000);
});
