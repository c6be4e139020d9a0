import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimulator, type Simulator } from "../../src/sim/index.ts";
import { cliEnv, lastJson, runCli, startCli, tempDataDir } from "./cli.ts";

let sim: Simulator;
beforeAll(async () => {
  // The simulator runs in this process so it outlives the sluice process we kill.
  sim = await startSimulator({ port: 0, config: { batch: { processingMs: 3_000 } } });
});
afterAll(async () => {
  await sim?.close();
});

describe("kill -9 while a provider batch is in flight", () => {
  it("resumes by polling the persisted batch, never resubmitting it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-kill-batch-"));
    const input = join(dir, "items.jsonl");
    const texts = ["charged twice on invoice {n}", "the app crashes with error {n}", "hello {n}", "export bug {n} fails"];
    writeFileSync(input, Array.from({ length: 40 }, (_, i) => JSON.stringify({ id: `b${i}`, text: texts[i % 4]!.replace("{n}", String(i)) })).join("\n"));
    const env = cliEnv({ SLUICE_DATA_DIR: tempDataDir(), OPENAI_BASE_URL: sim.openaiBaseURL, ANTHROPIC_BASE_URL: sim.anthropicBaseURL, SLUICE_BATCH_POLL_MS: "100" });

    const cli = startCli(["run", "test/fixtures/pipelines/batchy.ts", "--input", input], env);
    await new Promise<void>((resolve, reject) => {
      cli.child.stderr!.on("data", () => {
        if (/submitted openai batch/.test(cli.stderrSoFar())) resolve();
      });
      cli.done.then((r) => reject(new Error(`run ended before submitting a batch:\n${r.stderr}`)));
    });
    cli.child.kill("SIGKILL");
    const killed = await cli.done;
    expect(killed.signal).toBe("SIGKILL");
    expect(sim.stats().batches.created).toBe(1);
    expect(sim.stats().batches.completed).toBe(0);
    const runId = /run (run_[a-z0-9]+)/.exec(killed.stderr)![1]!;

    const resumed = await runCli(["resume", runId, "--json"], env);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resuming openai batch \S+ \(polling, not resubmitting\)/);
    const stats = sim.stats();
    expect(stats.batches.created).toBe(1);
    expect(stats.realtimeCalls).toBe(0);
    expect(Object.values(stats.billedByRequestHash).every((n) => n === 1)).toBe(true);
    const summary = lastJson(resumed.stdout);
    const classify = summary.stages.find((s: { id: string }) => s.id === "classify");
    // The calls were made (and are accounted) by the batch; the resumed process sent none of its own.
    expect(classify.providerCalls).toBe(stats.batchCalls);
    const byStatus = summary.items.byStatus as Record<string, number>;
    expect(Object.values(byStatus).reduce((a, b) => a + b, 0)).toBe(40);
    expect(byStatus.committed).toBeGreaterThan(0);
  }, 120_000);
});
