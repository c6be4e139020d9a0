import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openDatabase } from "../../src/store/index.ts";
import { dumpTarget } from "../../src/store/reports.ts";
import { freshPostgres, type TestDatabase } from "../../src/testing/databases.ts";
import { cliEnv, lastJson, runCli, startCli, type CliResult } from "./cli.ts";

/**
 * The second example as a user runs it (README commands): load the shipped
 * companies into a table, `sluice trigger crm-enrichment` (the cheap model
 * picks records, the larger one enriches them through the Anthropic SDK
 * against the simulator, rows land in a typed table), load the update file,
 * estimate what the next trigger would read (the rows past the cursor, which
 * stays put), trigger again: only the 15 new or changed records are read and
 * paid for.
 * On Postgres, `sluice watch` does the second run by itself.
 *
 * The flow runs on Postgres when DATABASE_URL is set (as in CI), else on
 * embedded PGlite: its commands open the store a dozen times, each a start
 * of PGlite's that Postgres does not pay. What the flow calls is tested on
 * both stores below it (`test/sources.test.ts`: the table source, its
 * cursor and snapshots; `test/typed-target.test.ts`: the typed table).
 */

const COMPANIES = "examples/data/companies.jsonl";
const UPDATES = "examples/data/companies.update.jsonl";
const load = (file: string) => ["table", "load", "crm_companies", file, "--key", "id", "--schema", "schemas/company.schema.json", "--json"];
const lines = (file: string) => readFileSync(join(import.meta.dirname, "..", "..", file), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { id: string; notes: string; description: string | null });

interface Increment {
  read: number;
  cursor: { from: string | null; to: string | null };
  runs: { status: string; items: { total: number; byStatus: Record<string, number> }; stages: { id: string; providerCalls: number; costUsd: number }[]; costUsd: number }[];
}

const ok = (r: CliResult) => expect(r.code, r.stderr).toBe(0);
const calls = (inc: Increment, stage: string) => inc.runs[0]!.stages.find((s) => s.id === stage)!.providerCalls;

/** Records the shipped notes call incomplete: the ones the triage stage should send on. */
const needy = (rows: { notes: string }[]) => rows.filter((r) => /missing|unknown|outdated|stale|vague|new lead/i.test(r.notes)).length;

const drivers: { name: string; skip?: string; env: () => Promise<{ env: NodeJS.ProcessEnv; url?: string; drop: () => Promise<void> }> }[] = [
  {
    name: "pglite",
    env: async () => {
      const dir = mkdtempSync(join(tmpdir(), "sluice-crm-"));
      return { env: cliEnv({ SLUICE_DATA_DIR: join(dir, "pglite") }), drop: async () => {} };
    },
  },
  {
    name: "postgres",
    skip: process.env.DATABASE_URL ? undefined : "DATABASE_URL is not set (CI sets it; locally point it at a Postgres server)",
    env: async () => {
      const t: TestDatabase = await freshPostgres(process.env.DATABASE_URL!);
      await t.db.close();
      const dir = mkdtempSync(join(tmpdir(), "sluice-crm-"));
      return { env: cliEnv({ DATABASE_URL: t.url, SLUICE_INCREMENTS_DIR: join(dir, "increments") }), url: t.url, drop: () => t.drop() };
    },
  },
];

for (const driver of drivers.filter((d) => d.name === (process.env.DATABASE_URL ? "postgres" : "pglite"))) {
  describe.skipIf(driver.skip)(`crm-enrichment end to end, on ${driver.name}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterAll(async () => {
      for (const c of cleanups) await c().catch(() => {});
    });

    it("enriches the records that need it, then only what changed, into a typed table", async () => {
      const { env, url, drop } = await driver.env();
      cleanups.push(drop);
      const companies = lines(COMPANIES);
      const updates = lines(UPDATES);

      const loaded = await runCli(load(COMPANIES), env);
      ok(loaded);
      expect(lastJson(loaded.stdout)).toMatchObject({ rows: companies.length, inserted: companies.length, updated: 0 });

      const first = await runCli(["trigger", "crm-enrichment", "--json"], env);
      ok(first);
      expect(first.stderr).toMatch(/built-in simulator/);
      const one = lastJson<Increment>(first.stdout);
      expect(one.read).toBe(companies.length);
      expect(one.runs[0]!.status).toBe("finished");
      expect(calls(one, "triage")).toBe(companies.length);
      const enriched = needy(companies);
      expect(enriched).toBeGreaterThan(10);
      expect(enriched).toBeLessThan(companies.length);
      expect(calls(one, "enrich")).toBe(enriched);
      expect(one.runs[0]!.items.byStatus).toEqual({ committed: enriched, gated_out: companies.length - enriched });

      const loadedAgain = await runCli(load(UPDATES), env);
      ok(loadedAgain);
      const newOnes = updates.filter((u) => !companies.some((c) => c.id === u.id)).length;
      expect(lastJson(loadedAgain.stdout)).toMatchObject({ inserted: newOnes, updated: updates.length - newOnes });

      // The estimate reads the same rows past the cursor, and leaves the cursor where it is.
      const estimate = await runCli(["estimate", "crm-enrichment", "--json"], env);
      ok(estimate);
      const est = lastJson<{ items: number; source: string; stages: { id: string; calls: { mid: number } }[] }>(estimate.stdout);
      expect(est.items).toBe(updates.length);
      expect(est.source).toBe(`${updates.length} rows of crm_companies past cursor updated_at ${one.cursor.to}`);
      expect(est.stages.find((s) => s.id === "triage")!.calls.mid).toBe(updates.length);

      const second = await runCli(["trigger", "crm-enrichment", "--json"], env);
      ok(second);
      const two = lastJson<Increment>(second.stdout);
      expect(two.read).toBe(updates.length);
      expect(two.cursor.from).toBe(one.cursor.to);
      expect(two.runs[0]!.items.total).toBe(updates.length);
      expect(calls(two, "triage")).toBe(updates.length);
      expect(calls(two, "enrich")).toBe(needy(updates));

      const third = await runCli(["trigger", "crm-enrichment"], env);
      ok(third);
      expect(third.stdout).toMatch(/no rows past cursor .*: nothing to run/);

      // The typed target: one row per enriched company, with plausible firmographics taken from the notes.
      const db = await openDatabase(url ? { url } : { dataDir: env.SLUICE_DATA_DIR });
      try {
        const rows = (await dumpTarget(db, "crm_enriched")).map((r) => JSON.parse(r) as Record<string, unknown>);
        const ids = new Set([...companies, ...updates].filter((c) => /missing|unknown|outdated|stale|vague|new lead/i.test(c.notes)).map((c) => c.id));
        expect(new Set(rows.map((r) => r.company_id))).toEqual(ids);
        const bluepeak = rows.find((r) => r.company_id === "C-1002")!;
        expect(bluepeak).toMatchObject({ industry: "fintech", business_model: "b2b", employee_count: 140, founded_year: 2001, headquarters: "Lyon", status: "active" });
        expect(String(bluepeak.description)).toMatch(/^Bluepeak Pay runs payments/);
      } finally {
        await db.close();
      }
    }, 600_000);

    // On Postgres only: embedded PGlite is opened by one process at a time, and here the test reads the store while watch runs.
    if (driver.name === "postgres") it("watch starts the run by itself when rows arrive, and stops on Ctrl-C", async () => {
      const { env } = await driver.env();
      const watch = startCli(["watch", "crm-enrichment", "--poll", "500ms", "--json"], env);
      let watchOut = "";
      const events = () => watchOut.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { kind: string; result?: Increment });
      watch.child.stdout!.on("data", (d) => (watchOut += d));
      const until = async (pred: () => boolean) => {
        for (const started = Date.now(); !pred(); await new Promise((r) => setTimeout(r, 100))) {
          if (Date.now() - started > 300_000) throw new Error(`gave up; stdout: ${watchOut}; stderr: ${watch.stderrSoFar()}`);
        }
      };
      try {
        await until(() => events().some((e) => e.kind === "watching"));
        expect(events().filter((e) => e.kind === "started")).toEqual([]);
        ok(await runCli(load(COMPANIES), env));
        await until(() => events().filter((e) => e.kind === "finished").length === 1);
        const finished = events().find((e) => e.kind === "finished")!;
        expect(finished.result!.read).toBe(lines(COMPANIES).length);
        expect(finished.result!.runs[0]!.status).toBe("finished");
        ok(await runCli(load(UPDATES), env));
        await until(() => events().filter((e) => e.kind === "finished").length === 2);
        expect(events().filter((e) => e.kind === "finished")[1]!.result!.read).toBe(lines(UPDATES).length);
        expect(events().filter((e) => e.kind === "started")).toHaveLength(2);
      } finally {
        watch.child.kill("SIGINT");
      }
      const done = await watch.done;
      expect(done.code, done.stderr).toBe(0);
      expect(done.stderr).toMatch(/stopped watching/);
    }, 600_000);
  });
}
