import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../../src/store/index.ts";
import { cliEnv, lastJson, runCli, startCli, tempDataDir } from "./cli.ts";
import { demoSlice } from "./data.ts";

interface Snapshot {
  /** (stage, item) → { status, outputId, updatedAt } for every work row in a resting state. */
  finals: Map<string, { status: string; outputId: number | null; updatedAt: string }>;
  attempts: number;
}

async function snapshot(dataDir: string, runId: string): Promise<Snapshot> {
  const db = await openDatabase({ dataDir });
  try {
    const rows = await db.rows<{ stage_id: string; item_id: string; status: string; output_id: number | null; updated_at: string }>(sql`
      SELECT stage_id, item_id, status, output_id, updated_at::text FROM work
      WHERE run_id = ${runId} AND status NOT IN ('queued', 'processing', 'failed_retryable')`);
    const attempts = await db.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM attempts WHERE run_id = ${runId}`);
    return {
      finals: new Map(rows.map((r) => [`${r.stage_id}/${r.item_id}`, { status: r.status, outputId: r.output_id === null ? null : Number(r.output_id), updatedAt: r.updated_at }])),
      attempts: attempts[0]!.n,
    };
  } finally {
    await db.close();
  }
}

async function results(dataDir: string, runId: string) {
  const db = await openDatabase({ dataDir });
  try {
    const outputs = await db.rows<{ stage_id: string; item_id: string; status: string; output_hash: string | null }>(sql`
      SELECT w.stage_id, w.item_id, w.status, o.output_hash FROM work w LEFT JOIN stage_outputs o ON o.id = w.output_id
      WHERE w.run_id = ${runId} ORDER BY w.stage_id, w.item_id`);
    const target = await db.rows<{ key: string; data: unknown; status: string }>(sql`SELECT key, data, status FROM ticket_triage ORDER BY key`);
    // Every (stage, item) pair computed once: one output row per key, one successful provider call per LLM output.
    const calls = await db.rows<{ stage_id: string; item_id: string; n: number }>(sql`
      SELECT stage_id, item_id, count(*)::int AS n FROM attempts
      WHERE run_id = ${runId} AND error_class IS NULL GROUP BY 1, 2 HAVING count(*) > 1`);
    return { outputs, target, repeatedCalls: calls };
  } finally {
    await db.close();
  }
}

/** Start a run and SIGKILL it once its progress output matches `when`. */
async function killWhen(args: string[], env: NodeJS.ProcessEnv, when: RegExp): Promise<string> {
  const cli = startCli(args, env);
  const killed = new Promise<void>((resolve) => {
    const check = () => {
      if (when.test(cli.stderrSoFar())) {
        cli.child.kill("SIGKILL");
        resolve();
      }
    };
    cli.child.stderr!.on("data", check);
  });
  const result = await Promise.race([killed.then(() => cli.done), cli.done]);
  expect(result.signal, `the run ended before the kill point ${when}:\n${result.stderr}\n${result.stdout}`).toBe("SIGKILL");
  const runId = /run (run_[a-z0-9]+)/.exec(result.stderr)?.[1];
  expect(runId).toBeDefined();
  return runId!;
}

describe("kill -9 at any moment, then resume", () => {
  it("loses no item, recomputes no completed output, and ends identical to an uninterrupted run", async () => {
    const input = demoSlice(1200);
    // The in-process provider (no HTTP) keeps kill timing independent of a simulator port.
    const base = { SLUICE_PROGRESS_MS: "50", SLUICE_PROVIDER: "inprocess", SLUICE_INPROCESS_LATENCY_MS: "3" };

    const refDir = tempDataDir();
    const reference = await runCli(["run", "ticket-triage", "--input", input, "--json"], cliEnv({ ...base, SLUICE_DATA_DIR: refDir }));
    expect(reference.code).toBe(0);
    const refSummary = lastJson(reference.stdout);

    const dir = tempDataDir();
    const env = cliEnv({ ...base, SLUICE_DATA_DIR: dir });
    const args = ["run", "ticket-triage", "--input", input];
    // Kill points: right after the run starts, mid-classify, mid-extract, once validate starts.
    const runId = await killWhen(args, env, /started run/);
    const points = [/stage classify: [1-9]\d{2,}\//, /stage extract: [1-9]\d{2,}\//, /stage validate:/];
    const snapshots: Snapshot[] = [];
    for (const point of points) {
      snapshots.push(await snapshot(dir, runId));
      // Running the same command again continues the unfinished run.
      expect(await killWhen(args, env, point)).toBe(runId);
    }
    const before = await snapshot(dir, runId);
    snapshots.push(before);
    const resumed = await runCli(["resume", runId, "--json"], env);
    expect(resumed.code).toBe(0);
    const summary = lastJson(resumed.stdout);
    expect(summary.runId).toBe(runId);

    // Zero items lost: the same final states as the uninterrupted run, summing to the rows read.
    expect(summary.items).toEqual(refSummary.items);
    const total = Object.values(summary.items.byStatus as Record<string, number>).reduce((a, b) => a + b, 0);
    expect(summary.items.total).toBe(1200);
    expect(total).toBe(1200);

    // Zero completed outputs recomputed: every row that was done at a kill is untouched after it.
    const after = await snapshot(dir, runId);
    let checked = 0;
    for (const snap of snapshots) {
      for (const [key, row] of snap.finals) {
        expect(after.finals.get(key), key).toEqual(row);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(1000);
    expect(snapshots.at(-1)!.finals.size).toBeGreaterThan(snapshots[0]!.finals.size);

    // Final outputs identical to the uninterrupted run.
    const got = await results(dir, runId);
    const want = await results(refDir, refSummary.runId);
    expect(got.outputs).toEqual(want.outputs);
    expect(got.target).toEqual(want.target);
    expect(got.target.length).toBeGreaterThan(100);
    expect(got.repeatedCalls).toEqual([]);
  }, 600_000);
});
