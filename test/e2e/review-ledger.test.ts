import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../../src/store/index.ts";
import { dumpTarget } from "../../src/store/reports.ts";
import { freshPostgres } from "../../src/testing/databases.ts";
import { EXTRACT_SYSTEM_V2, writeDemoVariant } from "../rerun/helpers.ts";
import { cliEnv, lastJson, runCli, tempDataDir, type CliResult } from "./cli.ts";
import { demoSlice } from "./data.ts";

/**
 * What a team needs before sluice writes to production tables, through the
 * CLI as a user runs it: the review queue (approve, edit, reject, then commit
 * exactly those), decisions that hold in a rerun where what was reviewed is
 * unchanged, and the commit ledger (revert a rerun, then the first run, back
 * to byte-identical targets).
 *
 * Each flow is some thirty commands, each a process that opens the store:
 * they run on Postgres (on embedded PGlite without DATABASE_URL), where a
 * command starts in a fraction of PGlite's time. What the CLI calls is
 * tested on both stores below it: decisions and commit in
 * `test/review-audit.test.ts`, revert in `test/typed-target.test.ts`, and a
 * revert refused under a later run with the store on PGlite in
 * `test/e2e/target-elsewhere.test.ts`; review through the console, then
 * `sluice review list`, on PGlite in `test/e2e/ui-browser.test.ts`.
 */
interface Summary {
  runId: string;
  status: string;
  items: { total: number; byStatus: Record<string, number> };
}
interface QueueRow {
  item_id: string;
  stage_id: string;
  reason: string;
  decision: string | null;
}

const stores: { name: string; env: () => Promise<{ env: NodeJS.ProcessEnv; drop: () => Promise<void> }> }[] = [
  { name: "PGlite", env: async () => ({ env: cliEnv({ SLUICE_DATA_DIR: tempDataDir(), SLUICE_BATCH_POLL_MS: "100" }), drop: async () => {} }) },
  {
    name: "Postgres",
    env: async () => {
      const pg = await freshPostgres(process.env.DATABASE_URL!);
      await pg.db.close();
      return { env: cliEnv({ DATABASE_URL: pg.url!, SLUICE_BATCH_POLL_MS: "100" }), drop: pg.drop };
    },
  },
];

async function cli(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  const out = await runCli(args, env);
  expect(out.code, `sluice ${args.join(" ")}: ${out.stderr}`).toBe(0);
  return out;
}

async function dump(env: NodeJS.ProcessEnv): Promise<string[]> {
  const db = await openDatabase({ url: env.DATABASE_URL || undefined, dataDir: env.SLUICE_DATA_DIR || undefined });
  try {
    return await dumpTarget(db, "ticket_triage");
  } finally {
    await db.close();
  }
}

const sum = (m: Record<string, number>) => Object.values(m).reduce((a, b) => a + b, 0);

const store = process.env.DATABASE_URL ? stores[1]! : stores[0]!;

describe("review, commit and revert through the CLI", () => {
  it(`commits exactly the approved and edited items, with the edits; rejected ones end rejected; the counts add up (${store.name})`, async () => {
    const { env, drop } = await store.env();
    try {
      const input = demoSlice(600);
      const first = lastJson<Summary>((await cli(["run", "ticket-triage", "--input", input, "--json"], env)).stdout);
      const before = first.items.byStatus;
      const queue = lastJson<QueueRow[]>((await cli(["review", "list", first.runId, "--json"], env)).stdout);
      expect(queue.length).toBe(before.needs_review);
      expect(queue.length).toBeGreaterThanOrEqual(4);
      const [approve, edit, reject, alsoReject] = queue.map((q) => q.item_id);

      await cli(["review", "approve", first.runId, approve!, "--by", "alice", "--note", "fine as it is"], env);
      await cli(["review", "edit", first.runId, edit!, "--set", "order_id=ORD-REVIEWED", "--set", "amount=12.5", "--set", "category=other", "--by", "bob"], env);
      await cli(["review", "reject", first.runId, reject!, alsoReject!], env);
      // An edit of the row's key, or of a field the row does not have (a misspelling), is refused, saying what the row has.
      const keyEdit = await runCli(["review", "edit", first.runId, edit!, "--set", "ticket_id=T-00003"], env);
      expect(keyEdit.code).toBe(1);
      expect(keyEdit.stderr).toMatch(/^sluice: ticket_id is the key of ticket_triage's rows: an edit cannot change it/);
      const misspelt = await runCli(["review", "edit", first.runId, edit!, "--set", "oder_id=ORD-1"], env);
      expect(misspelt.code).toBe(1);
      expect(misspelt.stderr).toMatch(/^sluice: "oder_id" is not a field of the row ticket_triage gets for \S+ \(its fields: customer_email, created_at, category, confidence, order_id, amount/);
      // Unknown items, and no selection at all, are refused with a reason.
      const unknown = await runCli(["review", "approve", first.runId, "T-99999"], env);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toMatch(/not waiting for review in run .*: T-99999/);
      expect((await runCli(["review", "approve", first.runId], env)).stderr).toMatch(/name the items to approve/);

      const pending = lastJson<QueueRow[]>((await cli(["review", "list", first.runId, "--json"], env)).stdout);
      expect(pending.length).toBe(queue.length - 4);
      const commitOut = await cli(["commit", first.runId, "--json"], env);
      expect(commitOut.stderr).toContain(`run ${first.runId}: 4 reviewed item(s) to take on`);
      const committed = lastJson<Summary>(commitOut.stdout);
      const after = committed.items.byStatus;
      // Taken on once: a second commit has none left to take on.
      expect((await cli(["commit", first.runId], env)).stderr).toContain(`run ${first.runId}: 0 reviewed item(s) to take on`);
      expect(committed.status).toBe("finished");
      expect(after.committed).toBe(before.committed! + 2);
      expect(after.rejected).toBe(2);
      expect(after.needs_review).toBe(before.needs_review! - 4);
      expect(sum(after)).toBe(sum(before));
      expect(committed.items.total).toBe(first.items.total);

      const rows = (await dump(env)).map((r) => JSON.parse(r) as { key: string; status: string; data: Record<string, unknown> });
      const byKey = new Map(rows.map((r) => [r.key, r]));
      expect(byKey.get(approve!)?.status).toBe("active");
      expect(byKey.get(edit!)?.data).toMatchObject({ order_id: "ORD-REVIEWED", amount: 12.5, category: "other" });
      expect(byKey.has(reject!)).toBe(false);
      expect(rows.filter((r) => r.status === "active").length).toBe(after.committed);

      // The decisions as a labelled set: the approved item keeps the model's label, the edited one has the reviewer's.
      const file = join(mkdtempSync(join(tmpdir(), "sluice-labels-")), "labels.csv");
      await cli(["labels", "export", "ticket-triage", "--format", "csv", "--out", file], env);
      const exported = parse(readFileSync(file, "utf8"), { columns: true }) as Record<string, string>[];
      expect(exported.map((r) => [r.item_id, r.decision]).sort()).toEqual([[approve, "approve"], [edit, "edit"], [reject, "reject"], [alsoReject, "reject"]].sort());
      const labelOf = (id: string) => exported.find((r) => r.item_id === id)!["label.category"];
      expect(labelOf(edit!)).toBe("other");
      expect(labelOf(reject!)).toBe("");
      expect(exported.find((r) => r.item_id === approve)!["item.subject"]).toBeTruthy();
      // The classifier judged against those labels: it agrees with the approval, not with the edit.
      const judged = lastJson<{ people: { labelled: number; after: { field: string; compared: number; same: number; byLabel: { label: string }[] }[] } }>(
        (await cli(["compare", "ticket-triage", "--stage", "classify", "--sample", "10", "--labelled", "--json"], env)).stdout,
      );
      expect(judged.people.labelled).toBe(2);
      expect(judged.people.after).toEqual([expect.objectContaining({ field: "category", compared: 2, same: 1 })]);
      expect(judged.people.after[0]!.byLabel.map((l) => l.label)).toContain("other");

      // A new run over the same input reuses every output: the decisions hold, nothing is asked again.
      const again = lastJson<Summary>((await cli(["run", "ticket-triage", "--input", input, "--json"], env)).stdout);
      expect(again.runId).not.toBe(first.runId);
      expect(again.items.byStatus).toEqual(after);
      const kept = (await dump(env)).map((r) => JSON.parse(r) as { key: string; data: Record<string, unknown> });
      expect(kept.find((r) => r.key === edit)?.data).toMatchObject({ order_id: "ORD-REVIEWED" });
    } finally {
      await drop();
    }
  }, 300_000);
  it(`reverts a rerun to the byte, refuses to revert under a later run, and reverts the first run to nothing (${store.name})`, async () => {
    const { env, drop } = await store.env();
    try {
      const input = demoSlice(300);
      const first = lastJson<Summary>((await cli(["run", "ticket-triage", "--input", input, "--json"], env)).stdout);
      const afterFirst = await dump(env);
      expect(afterFirst.length).toBeGreaterThan(20);

      const changed = writeDemoVariant("extract", { prompt: { system: EXTRACT_SYSTEM_V2 } });
      const rerun = lastJson<Summary>((await cli(["rerun", changed, "--stage", "extract", "--json"], env)).stdout);
      const afterRerun = await dump(env);
      expect(afterRerun).not.toEqual(afterFirst);

      // The rerun's pipeline file changes again: a decision on the rerun could never be committed, and is refused.
      const waiting = lastJson<QueueRow[]>((await cli(["review", "list", rerun.runId, "--json"], env)).stdout);
      const pristine = readFileSync(changed, "utf8");
      writeFileSync(changed, readFileSync(writeDemoVariant("extract", { prompt: { system: `${EXTRACT_SYSTEM_V2} Be terse.` } }), "utf8"));
      const stale = await runCli(["review", "approve", rerun.runId, waiting[0]!.item_id], env);
      expect(stale.code).toBe(1);
      expect(stale.stderr).toMatch(new RegExp(`^sluice: run ${rerun.runId} was made with stages the pipeline has changed since: extract \\(\\w{8} → \\w{8}\\)`));
      writeFileSync(changed, pristine);

      // The first run's rows were changed since: reverting it first is refused.
      const refused = await runCli(["revert", first.runId], env);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/later runs changed \d+ of the rows/);
      expect(await dump(env)).toEqual(afterRerun);

      const undo = lastJson<{ runId: string }>((await cli(["revert", rerun.runId, "--json"], env)).stdout);
      expect(await dump(env)).toEqual(afterFirst);
      // Reverted once, it is not reverted again (not even with --force), and the message says by which run.
      const again = await runCli(["revert", rerun.runId, "--force"], env);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain(`run ${rerun.runId} is already reverted (by run ${undo.runId})`);
      expect(await dump(env)).toEqual(afterFirst);

      const key = JSON.parse(afterFirst[0]!).key as string;
      const history = lastJson<{ run_id: string; op: string }[]>((await cli(["history", "ticket-triage", key, "--json"], env)).stdout);
      expect(history[0]).toMatchObject({ run_id: first.runId, op: "insert" });

      await cli(["revert", first.runId], env);
      expect(await dump(env)).toEqual([]);
      // Each revert is a run of its own, listed with the others.
      const status = (await cli(["status"], env)).stdout;
      expect(status).toContain(undo.runId);
    } finally {
      await drop();
    }
  }, 300_000);
});
