import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimulator, type Simulator } from "../../src/sim/index.ts";
import { freshPostgres } from "../../src/testing/databases.ts";
import type { Database } from "../../src/store/database.ts";
import { cliEnv, lastJson, runCli, startCli, tempDataDir } from "./cli.ts";
import { demoSlice } from "./data.ts";

/**
 * `--budget` as a user runs it: a run given a third of its estimate stops at
 * or under it (exit 3, the summary printed with what it spent), and `resume
 * --budget` with more finishes it, nothing paid twice. On Postgres, two
 * `sluice run` processes share the run and its budget.
 */
interface Summary {
  runId: string;
  status: string;
  costUsd: number;
  items: { total: number; byStatus: Record<string, number> };
  budget?: { capUsd: number | null; spentUsd: number; exhausted?: string };
}

let sim: Simulator;
let input: string;
beforeAll(async () => {
  sim = await startSimulator({ port: 0, config: { latency: { meanMs: 25, jitterMs: 10 } } });
  input = demoSlice(300);
});
afterAll(async () => {
  await sim?.close();
});

const url = process.env.DATABASE_URL;
interface Store {
  env: Record<string, string>;
  drop(): Promise<void>;
  /** The Postgres database, to look at which processes did the work. */
  db?: Database;
}
const stores = [
  { name: "PGlite, one process", processes: 1, open: async (): Promise<Store> => ({ env: { SLUICE_DATA_DIR: tempDataDir() }, drop: async () => {} }) },
  {
    name: "Postgres, two processes",
    processes: 2,
    skip: !url,
    open: async (): Promise<Store> => {
      const pg = await freshPostgres(url!);
      return { env: { DATABASE_URL: pg.url! }, drop: () => pg.drop(), db: pg.db };
    },
  },
];

/** The input run with no budget, on a store of its own: what each budgeted run must end as. Run once, for both stores. */
let alone: Promise<Summary> | undefined;
function unbudgeted(env: NodeJS.ProcessEnv): Promise<Summary> {
  alone ??= (async () => {
    const clean = await runCli(["run", "ticket-triage", "--input", input, "--json"], { ...env, DATABASE_URL: "", SLUICE_DATA_DIR: tempDataDir() });
    expect(clean.code, clean.stderr).toBe(0);
    return lastJson<Summary>(clean.stdout);
  })();
  return alone;
}

describe("sluice run --budget", () => {
  for (const store of stores) {
    it.skipIf(Boolean(store.skip))(`stops at or under a third of the estimate and resume --budget finishes it (${store.name}${store.skip ? "; skipped: DATABASE_URL is not set" : ""})`, async () => {
      const s = await store.open();
      try {
        const env = cliEnv({ ...s.env, OPENAI_BASE_URL: sim.openaiBaseURL, ANTHROPIC_BASE_URL: sim.anthropicBaseURL, OPENAI_API_KEY: "sk-test-budget", ANTHROPIC_API_KEY: "sk-ant-test-budget" });
        const estimate = await runCli(["estimate", "ticket-triage", "--input", input, "--json"], env);
        expect(estimate.code, estimate.stderr).toBe(0);
        const budget = Number((lastJson<{ costUsd: { mid: number } }>(estimate.stdout).costUsd.mid / 3).toFixed(4));
        sim.reset();

        const args = ["run", "ticket-triage", "--input", input, "--json", "--budget", String(budget)];
        const runs = await Promise.all(Array.from({ length: store.processes }, () => startCli(args, env).done));
        for (const r of runs) {
          // Stopped at the budget: exit 3, the reason on stderr, the summary (with what was spent) on stdout.
          expect(r.code, r.stderr).toBe(3);
          expect(r.stderr.trim().split("\n").at(-1)).toMatch(/^sluice: run run_\w+ stopped at its budget: \$[\d.]+ of \$[\d.]+ spent/);
        }
        const stopped = lastJson<Summary>(runs[0]!.stdout);
        expect(new Set(runs.map((r) => lastJson<Summary>(r.stdout).runId)).size).toBe(1);
        expect(stopped.status).toBe("budget_exhausted");
        expect(stopped.budget!.capUsd).toBe(budget);
        expect(stopped.budget!.spentUsd).toBeLessThanOrEqual(budget);
        expect(stopped.costUsd).toBeLessThanOrEqual(budget);
        expect(stopped.items.byStatus.failed_terminal ?? 0).toBe(0);
        if (s.db) {
          const payers = await s.db.rows(sql`SELECT DISTINCT claimed_by FROM work WHERE run_id = ${stopped.runId} AND stage_id = 'classify' AND output_id IS NOT NULL`);
          expect(payers.length).toBe(2);
        }

        const status = await runCli(["status", stopped.runId, "--json"], env);
        expect(lastJson<{ status: string }>(status.stdout).status).toBe("budget_exhausted");

        // A budget below what the run has spent is refused, not taken as a cap it is already over.
        const below = await runCli(["resume", stopped.runId, "--budget", String(stopped.costUsd / 2)], env);
        expect(below.code).toBe(1);
        expect(below.stderr).toMatch(new RegExp(`^sluice: --budget \\$\\S+ is less than the \\$\\S+ run ${stopped.runId} has spent already`));

        const resumed = await runCli(["resume", stopped.runId, "--json", "--budget", String(budget * 6)], env);
        expect(resumed.code, resumed.stderr).toBe(0);
        const done = lastJson<Summary>(resumed.stdout);
        expect(done.status).toBe("finished");
        expect(done.budget!.spentUsd).toBeGreaterThan(budget);
        expect(Object.entries(sim.stats().billedByRequestHash).filter(([, n]) => n > 1)).toEqual([]);

        // The same final states as a run with no budget.
        const alone = await unbudgeted(env);
        expect(done.items.byStatus).toEqual(alone.items.byStatus);
        expect(done.costUsd).toBeCloseTo(alone.costUsd, 4);
      } finally {
        await s.drop();
      }
    }, 300_000);
  }
});
