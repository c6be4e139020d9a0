import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cliEnv, lastJson, runCli, tempDataDir } from "./cli.ts";

describe("dead letters", () => {
  it("lists dead-lettered items with class and message, and `dlq retry` requeues exactly those", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-dlq-"));
    const input = join(dir, "items.jsonl");
    writeFileSync(input, ["invoice charged twice", "the app crashes", "export error"].map((t, i) => JSON.stringify({ id: `d${i}`, text: t })).join("\n"));
    const broken = join(dir, "broken.json");
    writeFileSync(broken, JSON.stringify({ faults: { serverError: 1 } }));
    const data = tempDataDir();
    const env = cliEnv({ SLUICE_DATA_DIR: data, SLUICE_SIM_CONFIG: broken, SLUICE_MAX_ATTEMPTS: "2" });

    const run = await runCli(["run", "test/fixtures/pipelines/mini.ts", "--input", input, "--json"], env);
    expect(run.code, run.stderr).toBe(0); // a finished run exits 0 even with dead letters
    const summary = lastJson(run.stdout);
    expect(summary.items.byStatus).toEqual({ failed_terminal: 3 });
    expect(run.stderr).toMatch(/built-in simulator/);

    const listed = await runCli(["dlq", summary.runId, "--json"], env);
    const letters = lastJson<{ stage: string; errorClass: string; message: string; attempts: number }[]>(listed.stdout);
    expect(letters).toHaveLength(3);
    for (const l of letters) {
      expect(l.stage).toBe("classify");
      expect(l.errorClass).toBe("transient");
      expect(l.message).toMatch(/500|server/i);
      expect(l.message).toMatch(/gave up after 2 attempts/);
      expect(l.attempts).toBe(2);
    }

    const healthy = cliEnv({ SLUICE_DATA_DIR: data, SLUICE_MAX_ATTEMPTS: "2" });
    const retried = await runCli(["dlq", "retry", summary.runId, "--json"], healthy);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stderr).toMatch(/requeued 3 dead letter/);
    const after = lastJson(retried.stdout);
    expect(after.runId).toBe(summary.runId);
    expect(after.items.byStatus.failed_terminal).toBeUndefined();
    expect(Object.values(after.items.byStatus as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(3);
    const none = await runCli(["dlq", summary.runId], healthy);
    expect(none.stdout).toMatch(/no dead letters/);
  }, 120_000);
});
