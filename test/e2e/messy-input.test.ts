import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeMessyCsv } from "../fixtures/messy.ts";
import { cliEnv, lastJson, runCli, tempDataDir } from "./cli.ts";

describe("sluice run on a messy CSV", () => {
  it("exits 0, quarantines each bad row with its line and reason, and the counts add up to the rows read", async () => {
    const messy = await writeMessyCsv(mkdtempSync(join(tmpdir(), "sluice-messy-")));
    const env = cliEnv({ SLUICE_DATA_DIR: tempDataDir() });
    const run = await runCli(["run", "ticket-triage", "--input", messy.path, "--json"], env);
    expect(run.stderr).not.toMatch(/^sluice: /m);
    expect(run.code).toBe(0);
    const summary = lastJson(run.stdout);
    const byStatus = summary.items.byStatus as Record<string, number>;
    const sum = Object.values(byStatus).reduce((a, b) => a + b, 0);
    expect(summary.items.total).toBe(messy.rowsRead);
    expect(sum).toBe(messy.rowsRead);
    expect(byStatus.quarantined).toBe(messy.expected.quarantined);
    expect(byStatus.deduplicated).toBe(messy.expected.duplicates);
    // Nothing is left in flight.
    for (const inFlight of ["queued", "processing", "failed_retryable"]) expect(byStatus[inFlight]).toBeUndefined();

    const listed = await runCli(["quarantine", summary.runId, "--json"], env);
    expect(listed.code).toBe(0);
    const rows = lastJson<{ line: number; reason: string }[]>(listed.stdout);
    expect(rows.map((r) => r.line)).toEqual(messy.expected.quarantinedLines);
    expect(rows.map((r) => r.reason)).toEqual(messy.expected.reasons);
    for (const r of rows) expect(r.reason.length).toBeGreaterThan(10);

    // The human listing names lines and reasons too.
    const human = await runCli(["quarantine", summary.runId], env);
    expect(human.stdout).toContain(`line ${String(messy.expected.quarantinedLines[0]).padStart(6)}`);
    expect(human.stdout).toMatch(/invalid UTF-8/);
    expect(human.stdout).toMatch(/over the 262,144-byte limit/);
  }, 180_000);

  it("fails with a one-line reason when it cannot run", async () => {
    const env = cliEnv({ SLUICE_DATA_DIR: tempDataDir() });
    const missingInput = await runCli(["run", "ticket-triage", "--input", "does/not/exist.csv"], env);
    expect(missingInput.code).not.toBe(0);
    expect(missingInput.stderr.trim().split("\n").at(-1)).toBe("sluice: cannot read input does/not/exist.csv: no such file");
    const badPipeline = await runCli(["run", "nope", "--input", "examples/data/tickets.csv"], env);
    expect(badPipeline.code).not.toBe(0);
    expect(badPipeline.stderr).toMatch(/^sluice: no pipeline "nope": looked for pipelines\/nope.ts/m);
    const badDb = await runCli(["status"], cliEnv({ DATABASE_URL: "postgres://nobody:secret@127.0.0.1:1/none" }));
    expect(badDb.code).not.toBe(0);
    expect(badDb.stderr).toMatch(/^sluice: cannot open the database at DATABASE_URL/m);
    expect(badDb.stderr).not.toContain("secret");
  });

  it("refuses an empty, header-only or unreadable input with a one-line reason, and records no run", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-empty-"));
    const env = cliEnv({ SLUICE_DATA_DIR: tempDataDir() });
    const files = {
      "empty.csv": "",
      "header-only.csv": "id,subject,body,customer_email,created_at\n",
      "empty.jsonl": "\n\n",
    };
    for (const [name, text] of Object.entries(files)) {
      const path = join(dir, name);
      writeFileSync(path, text);
      const run = await runCli(["run", "ticket-triage", "--input", path], env);
      expect(run.code, name).toBe(1);
      expect(run.stderr.trim().split("\n").at(-1), name).toBe(`sluice: input ${path} has no rows: nothing to run`);
    }
    const binary = join(dir, "binary.csv");
    writeFileSync(binary, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 193 + 7) % 256)));
    const bad = await runCli(["run", "ticket-triage", "--input", binary], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toMatch(/^sluice: /);
    const status = await runCli(["status", "--json"], env);
    expect(lastJson(status.stdout)).toEqual([]);
  }, 180_000);
});
