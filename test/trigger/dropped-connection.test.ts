import postgres from "postgres";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runPipeline } from "../../src/runners/local/index.ts";
import { configureTriggerRunner, defineSluiceTasks, submitRun, workerPoolFromEnv, type OrchestratorOutput } from "../../src/runners/trigger/index.ts";
import { openDatabase, type Database } from "../../src/store/index.ts";
import { createInProcessProvider, freshPostgres, memoryDatabase, singleProvider, type TestDatabase } from "../../src/testing/index.ts";
import { commitTable, miniItems, miniVariant, targetRows, tempDir, workStatuses } from "./data.ts";
import { installTaskCatalog, startTriggerHarness, type TriggerHarness } from "./harness.ts";

/**
 * The server ends a worker's connection in the middle of a transaction
 * (`pg_terminate_backend`, as a restart, a failover or an
 * idle-in-transaction timeout would). postgres.js 3.4.9 unpatched throws an
 * uncaught TypeError from a timer when it writes the transaction's ROLLBACK
 * to the dead socket, and the process ends; patched, the transaction fails
 * with CONNECTION_CLOSED, the task's retry goes on, and the pool opens a new
 * connection for what comes next.
 */

const url = process.env.DATABASE_URL;
const uncaught: unknown[] = [];
const onUncaught = (err: unknown) => void uncaught.push(err);

interface Killer {
  db: Database;
  /** Errors the transactions it cut short ended with. */
  errors: unknown[];
  /** End the backend of the next `n` transactions once they have begun. */
  arm(n: number): void;
}

/** The store as a worker uses it, with the server ending the connection of the next armed transactions after their first statement. */
function terminatingTransactions(db: Database, admin: postgres.Sql): Killer {
  let armed = 0;
  const errors: unknown[] = [];
  const killer: Killer = {
    errors,
    arm: (n) => void (armed = n),
    db: {
      ...db,
      transaction<T>(fn: (tx: Database) => Promise<T>): Promise<T> {
        if (armed === 0) return db.transaction(fn);
        armed--;
        return db
          .transaction(async (tx) => {
            const [row] = await tx.rows<{ pid: number }>(sql`SELECT pg_backend_pid() AS pid`);
            await admin`SELECT pg_terminate_backend(${row!.pid})`;
            while ((await admin`SELECT 1 FROM pg_stat_activity WHERE pid = ${row!.pid}`).length) await new Promise((r) => setTimeout(r, 20));
            return fn(tx);
          })
          .catch((err: unknown) => {
            errors.push(err);
            throw err;
          });
      },
    },
  };
  return killer;
}

describe.skipIf(!url)(`a worker's Postgres connection ended by the server${url ? "" : " (skipped: needs DATABASE_URL)"}`, () => {
  let pg: TestDatabase;
  let worker: Database;
  let local: TestDatabase;
  let admin: postgres.Sql;
  let harness: TriggerHarness;
  let killer: Killer;
  const dir = tempDir();
  installTaskCatalog();
  const pipeline = miniVariant("dropped");
  defineSluiceTasks([pipeline]);

  beforeAll(async () => {
    process.on("uncaughtException", onUncaught);
    [pg, local] = await Promise.all([freshPostgres(url!), memoryDatabase()]);
    // The pool a deployed worker opens: few connections, an idle timeout and a lifetime.
    worker = await openDatabase({ url: pg.url!, pool: workerPoolFromEnv({}) });
    admin = postgres(url!, { max: 1, onnotice: () => {} });
    killer = terminatingTransactions(worker, admin);
    harness = await startTriggerHarness();
    configureTriggerRunner({ db: killer.db, providers: singleProvider(createInProcessProvider()), chunkSize: 6, engine: { leaseMs: 1_000 } });
  });
  afterAll(async () => {
    process.off("uncaughtException", onUncaught);
    await harness?.close();
    await worker?.close();
    await admin?.end();
    await Promise.all([pg?.drop(), local?.drop()]);
    dir.remove();
  });

  test("a transaction cut short fails with CONNECTION_CLOSED; the process lives and the pool goes on", async () => {
    killer.arm(1);
    await expect(killer.db.transaction((tx) => tx.rows(sql`SELECT 1 AS one`))).rejects.toMatchObject({ code: "CONNECTION_CLOSED" });
    // Let the timer that used to throw run.
    await new Promise((r) => setTimeout(r, 100));
    expect(uncaught).toEqual([]);
    expect(await killer.db.rows<{ one: number }>(sql`SELECT 1 AS one`)).toEqual([{ one: 1 }]);
    expect(await killer.db.transaction((tx) => tx.rows<{ two: number }>(sql`SELECT 2 AS two`))).toEqual([{ two: 2 }]);
  });

  test("an orchestrator whose connection is ended mid-transaction is retried and the run commits the same rows", async () => {
    const input = dir.file("dropped.jsonl", miniItems("dropped", 30));
    const reference = runPipeline({ db: local.db, pipeline, providers: singleProvider(createInProcessProvider()) }, input, { fresh: true });
    const submitted = await submitRun({ db: killer.db, pipeline, inputPath: input, allowEmbedded: true });
    const before = killer.errors.length;
    killer.arm(1); // the orchestrator's first transaction (creating the commit target)
    await harness.drain();
    await new Promise((r) => setTimeout(r, 100));
    expect(uncaught).toEqual([]);
    expect(killer.errors.slice(before)).toEqual([expect.objectContaining({ code: "CONNECTION_CLOSED" })]);

    const orchestrator = harness.fake.runs.get(submitted.triggerRunId)!;
    expect(orchestrator.status).toBe("COMPLETED");
    expect(orchestrator.attempts).toBe(2);
    const output = orchestrator.output as OrchestratorOutput;
    const ref = await reference;
    expect(output.summary.status).toBe("finished");
    expect(output.summary.items).toEqual(ref.items);
    expect(await targetRows(killer.db, commitTable(pipeline))).toEqual(await targetRows(local.db, commitTable(pipeline)));
    expect(Object.values(await workStatuses(killer.db, submitted.runId))).toEqual(Object.values(await workStatuses(local.db, ref.runId)));
  });
});
