import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimulator, type Simulator } from "../../src/sim/index.ts";
import { cliEnv, lastJson, runCli, startCli, tempDataDir } from "./cli.ts";
import { demoSlice } from "./data.ts";

/**
 * What a killed run had been answered is not paid for again: after kill -9
 * and resume, the requests billed twice are those the simulator saw cut off
 * (answered after their client had gone, or never read), give or take the
 * one the kill may catch between reading its answer and journaling it.
 */
let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ port: 0, config: { latency: { meanMs: 15, jitterMs: 5 } } });
});
afterAll(async () => {
  await sim?.close();
});

function paidTwice(): number {
  return Object.values(sim.stats().billedByRequestHash).reduce((sum, n) => sum + Math.max(0, n - 1), 0);
}

describe("kill -9 in the middle of a stage's calls", () => {
  it("pays again only for the calls cut off by the kill", async () => {
    const env = cliEnv({
      SLUICE_DATA_DIR: tempDataDir(),
      OPENAI_API_KEY: "sk-test-kill-answers",
      OPENAI_BASE_URL: sim.openaiBaseURL,
      ANTHROPIC_BASE_URL: sim.anthropicBaseURL,
      SLUICE_PROGRESS_MS: "50",
    });
    const input = demoSlice(1500);
    sim.reset();
    const cli = startCli(["run", "ticket-triage", "--input", input], env);
    // Killed while classify is answering, between two writes of its results.
    await new Promise<void>((resolve) => {
      const check = () => {
        if (/stage classify: [3-9]\d{2,}\//.test(cli.stderrSoFar())) {
          cli.child.kill("SIGKILL");
          resolve();
        }
      };
      cli.child.stderr!.on("data", check);
      void cli.done.then(() => resolve());
    });
    const killed = await cli.done;
    expect(killed.signal, killed.stderr).toBe("SIGKILL");
    const runId = /run (run_[a-z0-9]+)/.exec(killed.stderr)![1]!;
    const billedAtKill = sim.stats().billed;

    const resumed = await runCli(["resume", runId, "--json"], env);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(lastJson<{ status: string }>(resumed.stdout).status).toBe("finished");
    const stats = sim.stats();
    expect(billedAtKill).toBeGreaterThan(200);
    // Without the journal, every answer received since the last group write
    // (hundreds) is paid again. What remains is the calls in flight at the
    // kill, which the resumed run counts from the dead process's journal and
    // says so.
    const inFlight = Number(/stopped with (\d+) call\(s\) in flight/.exec(resumed.stderr)?.[1] ?? 0);
    expect(inFlight, resumed.stderr).toBeGreaterThan(0);
    expect(paidTwice()).toBeLessThanOrEqual(inFlight);
    // The simulator's own view agrees, but for an answer written as the client's connection closed, which it may miss.
    expect(paidTwice()).toBeLessThanOrEqual(stats.cutOff + 2);
    // What the run says it called is what the provider billed: the answers the killed process had and never
    // wrote are counted (replayed from its journal), and so are the calls it had out, answered or not.
    const summary = lastJson<{ stages: { providerCalls: number }[] }>((await runCli(["status", runId, "--json"], env)).stdout);
    const recorded = summary.stages.reduce((a, s) => a + s.providerCalls, 0);
    expect(recorded).toBeGreaterThanOrEqual(stats.billed);
    expect(recorded).toBeLessThanOrEqual(stats.billed + inFlight);
  }, 180_000);
});
