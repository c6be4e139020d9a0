import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { connect } from "../../src/store/postgres-js/index.ts";
import { openDatabase } from "../../src/store/index.ts";
import { dumpTarget } from "../../src/store/reports.ts";
import { EXTRACT_SYSTEM_V2 } from "../rerun/helpers.ts";
import { cliEnv, lastJson, ROOT, runCli, tempDataDir, type CliResult } from "./cli.ts";
import { demoSlice } from "./data.ts";

/**
 * A commit target in another database than the store (`target.url`), through
 * the CLI as a user runs it, with the store on embedded PGlite and the target
 * on Postgres: rows and their ledger land in that database and nothing of
 * them in the store, a rerun and its revert leave the target byte-identical,
 * history reads the ledger there, and the URL's password reaches neither
 * database nor output. The target has a connection of its own whatever the
 * store is (`src/store/target-databases.ts`); a target in the store's own database is the
 * demo's, on both stores (`test/typed-target.test.ts`).
 */
interface Summary {
  runId: string;
  status: string;
  items: { byStatus: Record<string, number> };
}

/** The demo pipeline with its target in the database named by TRIAGE_TARGET_URL, and optionally extract's prompt changed. */
function variant(changedExtract: boolean): string {
  const file = join(mkdtempSync(join(tmpdir(), "sluice-elsewhere-")), "pipeline.mts");
  writeFileSync(
    file,
    `import demo from ${JSON.stringify(join(ROOT, "pipelines", "ticket-triage.ts"))};
import { definePipeline } from ${JSON.stringify(join(ROOT, "src", "core", "define.ts"))};
export default definePipeline({
  ...demo,
  stages: demo.stages.map((s) =>
    s.kind === "commit" ? { ...s, target: { ...s.target, url: process.env.TRIAGE_TARGET_URL } }
    : ${changedExtract} && s.id === "extract" ? { ...s, prompt: { ...s.prompt, system: ${JSON.stringify(EXTRACT_SYSTEM_V2)} } }
    : s),
});
`,
  );
  return file;
}

async function cli(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  const out = await runCli(args, env);
  expect(out.code, `sluice ${args.join(" ")}: ${out.stderr}`).toBe(0);
  expect(out.stdout + out.stderr, "the target URL's password is never printed").not.toContain(PASSWORD);
  return out;
}

const PASSWORD = "s3cret-target-pw";

describe.skipIf(!process.env.DATABASE_URL)("a target in another database, with the store on PGlite", () => {
  it("commits there with its ledger, reverts a rerun to the byte and the first run to nothing, and never keeps the password", async () => {
    // The target's database, reached as a user with a password of its own.
    // The target's database: empty (sluice's store tables are not there), reached as a user with a password of its own.
    const suffix = Math.random().toString(36).slice(2, 8);
    const role = `sluice_writer_${suffix}`;
    const targetName = `sluice_target_${suffix}`;
    const admin = await connect({ url: process.env.DATABASE_URL!, migrate: false });
    await admin.rows(sql.raw(`CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}'`));
    await admin.rows(sql.raw(`CREATE DATABASE ${targetName} OWNER ${role}`));
    const adminUrl = new URL(process.env.DATABASE_URL!);
    adminUrl.pathname = `/${targetName}`;
    const targetUrl = new URL(adminUrl);
    targetUrl.username = role;
    targetUrl.password = PASSWORD;
    const env = cliEnv({
      SLUICE_DATA_DIR: tempDataDir(),
      TRIAGE_TARGET_URL: targetUrl.toString(),
      SLUICE_BATCH_POLL_MS: "100",
    });
    const store = () => openDatabase({ dataDir: env.SLUICE_DATA_DIR });
    const target = await connect({ url: adminUrl.toString(), migrate: false });
    const dump = () => dumpTarget(target, "ticket_triage");
    try {
      const first = variant(false);
      const input = demoSlice(160);
      const run1 = lastJson<Summary>((await cli(["run", first, "--input", input, "--json"], env)).stdout);
      expect(run1.status).toBe("finished");
      const afterFirst = await dump();
      expect(afterFirst.length).toBe(run1.items.byStatus.committed);
      expect(afterFirst.length).toBeGreaterThan(20);
      const [ledger] = await target.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM target_ledger WHERE run_id = ${run1.runId} AND op = 'insert'`);
      expect(ledger!.n).toBe(afterFirst.length);

      // Nothing of the target in the store: no table, no ledger rows, and the password nowhere.
      const db = await store();
      try {
        const [table] = await db.rows<{ t: string | null }>(sql`SELECT to_regclass('ticket_triage')::text AS t`);
        expect(table!.t).toBeNull();
        const [storeLedger] = await db.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM target_ledger`);
        expect(storeLedger!.n).toBe(0);
        const [runs] = await db.rows<{ text: string }>(sql`SELECT string_agg(to_jsonb(r)::text, ' ') AS text FROM runs r`);
        expect(runs!.text).not.toContain(PASSWORD);
        expect(runs!.text).toContain(`postgres://${role}@`);
      } finally {
        await db.close();
      }
      // `ls` shows where the target lives, without the password.
      expect((await cli(["ls"], env)).stdout).toContain("ticket_triage");

      // A rerun after a prompt change, then its revert: the target is what it was, to the byte.
      const changed = variant(true);
      const rerun = lastJson<Summary>((await cli(["rerun", changed, "--stage", "extract", "--json"], env)).stdout);
      expect(await dump()).not.toEqual(afterFirst);
      const refused = await runCli(["revert", run1.runId, "--pipeline", first], env);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/later runs changed \d+ of the rows/);
      // The definition in pipelines/ has no target.url: revert says which database the run wrote to, and how to reach it.
      const lost = await runCli(["revert", rerun.runId], env);
      expect(lost.code).toBe(1);
      expect(lost.stderr).toMatch(/wrote stage commit's target in postgres:\/\/sluice_writer_\w+@.*defines no target\.url for it: give the definition that wrote it \(sluice revert --pipeline <file>\)/);
      expect(lost.stderr).not.toContain(PASSWORD);
      const undo = lastJson<{ runId: string; targets: { target: string; restored: number }[] }>((await cli(["revert", rerun.runId, "--pipeline", changed, "--json"], env)).stdout);
      expect(undo.targets[0]!.restored).toBeGreaterThan(0);
      expect(await dump()).toEqual(afterFirst);

      const key = JSON.parse(afterFirst[0]!).key as string;
      const history = lastJson<{ run_id: string; op: string }[]>((await cli(["history", first, key, "--json"], env)).stdout);
      expect(history[0]).toMatchObject({ run_id: run1.runId, op: "insert" });

      await cli(["revert", run1.runId, "--pipeline", first], env);
      expect(await dump()).toEqual([]);
    } finally {
      await target.close();
      await admin.rows(sql.raw(`DROP DATABASE IF EXISTS ${targetName} WITH (FORCE)`));
      await admin.rows(sql.raw(`DROP ROLE IF EXISTS ${role}`));
      await admin.close();
    }
  }, 300_000);
});
