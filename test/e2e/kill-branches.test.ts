import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../../src/store/index.ts";
import { cliEnv, lastJson, runCli, startCli, tempDataDir } from "./cli.ts";
import { demoSlice } from "./data.ts";

/**
 * The branched demo (classify → billing | bugs → validate → commit) killed
 * with SIGKILL while both branches are claiming, then `sluice resume`: it
 * ends as an uninterrupted run ends, and no output done at the kill is
 * computed again.
 */

const PIPELINE = "test/fixtures/pipelines/branches.ts";

async function rows(dataDir: string, runId: string) {
  const db = await openDatabase({ dataDir });
  try {
    const work = await db.rows<{ stage_id: string; item_id: string; status: string; output_hash: string | null; updated_at: string }>(sql`
      SELECT w.stage_id, w.item_id, w.status, o.output_hash, w.updated_at::text FROM work w LEFT JOIN stage_outputs o ON o.id = w.output_id
      WHERE w.run_id = ${runId} ORDER BY w.stage_id, w.item_id`);
    const target = await db.rows<{ key: string; data: unknown; status: string }>(sql`SELECT key, data, status FROM ticket_branches ORDER BY key`).catch(() => []);
    return { work, target };
  } finally {
    await db.close();
  }
}

describe("kill -9 while both branches run, then resume", () => {
  it("ends with the statuses, outputs and committed rows of an uninterrupted run", async () => {
    const input = demoSlice(600);
    const base = { SLUICE_PROGRESS_MS: "50", SLUICE_PROVIDER: "inprocess", SLUICE_INPROCESS_LATENCY_MS: "5" };

    const refDir = tempDataDir();
    const reference = await runCli(["run", PIPELINE, "--input", input, "--json"], cliEnv({ ...base, SLUICE_DATA_DIR: refDir }));
    expect(reference.code).toBe(0);
    const refSummary = lastJson(reference.stdout);

    const dir = tempDataDir();
    const env = cliEnv({ ...base, SLUICE_DATA_DIR: dir });
    const cli = startCli(["run", PIPELINE, "--input", input], env);
    // Killed once a branch has settled some items: both branches are queued by then (they start together).
    const point = /stage (billing|bugs): [1-9]\d*\//;
    cli.child.stderr!.on("data", () => {
      if (point.test(cli.stderrSoFar())) cli.child.kill("SIGKILL");
    });
    const killed = await cli.done;
    expect(killed.signal, `the run ended before the kill point:\n${killed.stderr}`).toBe("SIGKILL");
    const runId = /run (run_[a-z0-9]+)/.exec(killed.stderr)![1]!;

    const before = await rows(dir, runId);
    const done = before.work.filter((r) => !["queued", "processing", "failed_retryable"].includes(r.status));
    const stagesStarted = new Set(before.work.map((r) => r.stage_id));
    expect(stagesStarted.has("billing") && stagesStarted.has("bugs")).toBe(true);
    expect(before.target).toEqual([]);

    const resumed = await runCli(["resume", runId, "--json"], env);
    expect(resumed.code).toBe(0);
    const summary = lastJson(resumed.stdout);
    expect(summary.status).toBe("finished");
    expect(summary.items).toEqual(refSummary.items);

    const after = await rows(dir, runId);
    const want = await rows(refDir, refSummary.runId);
    const strip = (w: typeof after.work) => w.map(({ updated_at: _, ...r }) => r);
    expect(strip(after.work)).toEqual(strip(want.work));
    expect(after.target).toEqual(want.target);
    expect(after.target.length).toBeGreaterThan(50);
    // What was done at the kill was not done again.
    const now = new Map(after.work.map((r) => [`${r.stage_id}/${r.item_id}`, r]));
    for (const r of done) expect(now.get(`${r.stage_id}/${r.item_id}`), `${r.stage_id}/${r.item_id}`).toEqual(r);
    expect(done.length).toBeGreaterThan(0);
  }, 600_000);
});
