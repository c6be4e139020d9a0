import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { freshPostgres } from "../../src/testing/databases.ts";
import { cliEnv, lastJson, startCli } from "./cli.ts";
import { demoSlice } from "./data.ts";

const url = process.env.DATABASE_URL;

describe.skipIf(!url)(`two sluice processes sharing one run on Postgres${url ? "" : " (skipped: DATABASE_URL is not set)"}`, () => {
  it("computes each item's stage output exactly once, with both processes doing work", async () => {
    const pg = await freshPostgres(url!);
    try {
      const input = demoSlice(800);
      // Simulated provider latency keeps both processes busy long enough to share the stages.
      const simConfig = join(mkdtempSync(join(tmpdir(), "sluice-shared-")), "sim.json");
      writeFileSync(simConfig, JSON.stringify({ latency: { meanMs: 40, jitterMs: 5 } }));
      const env = cliEnv({ DATABASE_URL: pg.url, SLUICE_SIM_CONFIG: simConfig });
      const args = ["run", "ticket-triage", "--input", input, "--json"];
      const [a, b] = await Promise.all([startCli(args, env).done, startCli(args, env).done]);
      expect(a.code, a.stderr).toBe(0);
      expect(b.code, b.stderr).toBe(0);
      // Every call of a segment listens on one signal; Node must not take that for a leak.
      for (const r of [a, b]) expect(r.stderr).not.toMatch(/MaxListenersExceededWarning/);
      const sa = lastJson(a.stdout);
      const sb = lastJson(b.stdout);
      expect(sa.runId).toBe(sb.runId);
      const runId = sa.runId as string;

      // One successful provider call per LLM output: nothing computed twice.
      const dupCalls = await pg.db.rows(sql`
        SELECT stage_id, item_id FROM attempts WHERE run_id = ${runId} AND error_class IS NULL
        GROUP BY stage_id, item_id HAVING count(*) > 1`);
      expect(dupCalls).toEqual([]);
      const calls = await pg.db.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM attempts WHERE run_id = ${runId}`);
      const llmOutputs = await pg.db.rows<{ n: number }>(sql`
        SELECT count(*)::int AS n FROM work WHERE run_id = ${runId} AND stage_id IN ('classify', 'extract') AND output_id IS NOT NULL AND NOT reused`);
      expect(calls[0]!.n).toBe(llmOutputs[0]!.n);

      // Both processes computed part of the run.
      const workers = await pg.db.rows<{ claimed_by: string; n: number }>(sql`
        SELECT claimed_by, count(*)::int AS n FROM work WHERE run_id = ${runId} AND stage_id = 'classify' GROUP BY 1`);
      const perStage = await pg.db.rows(sql`SELECT stage_id, claimed_by, count(*)::int AS n FROM work WHERE run_id = ${runId} GROUP BY 1, 2 ORDER BY 1, 2`);
      expect(workers.length, JSON.stringify(perStage)).toBe(2);
      for (const w of workers) expect(w.n).toBeGreaterThan(50);

      const byStatus = sa.items.byStatus as Record<string, number>;
      expect(sa.items.total).toBe(800);
      expect(Object.values(byStatus).reduce((x, y) => x + y, 0)).toBe(800);
      expect(sb.items).toEqual(sa.items);
    } finally {
      await pg.drop();
    }
  }, 180_000);
});
