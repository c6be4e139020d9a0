import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { PGlite } from "@electric-sql/pglite";
import { PGliteThread } from "./client.ts";

// One database for the file (creating one takes seconds); each test its own table.
let shared: PGliteThread;
beforeAll(async () => {
  shared = await PGliteThread.open({ startParams: [...PGlite.defaultStartParams] });
}, 120_000);
afterAll(() => shared?.close());
let tables = 0;
async function open(): Promise<PGliteThread> {
  await shared.query(`create schema s${++tables}`);
  await shared.query(`set search_path = s${tables}`);
  return shared;
}

type Rows = { rows: Record<string, unknown>[] };

describe("PGlite in a thread of its own", () => {
  test("answers a statement with its rows, in either row mode", async () => {
    const pg = await open();
    expect(((await pg.query("select $1::int + 1 as n, 'x' as s", [41])) as Rows).rows).toEqual([{ n: 42, s: "x" }]);
    expect(((await pg.query("select 1 as a, 2 as b", [], { rowMode: "array" })) as { rows: unknown[][] }).rows).toEqual([[1, 2]]);
  });

  test("keeps timestamps as text, as drizzle-orm's driver asks, and jsonb as values", async () => {
    const pg = await open();
    const { rows } = (await pg.query("select timestamptz '2026-01-02 03:04:05+00' as at, '{\"a\": [1, 2]}'::jsonb as doc")) as Rows;
    expect(typeof rows[0]!.at).toBe("string");
    expect(rows[0]!.doc).toEqual({ a: [1, 2] });
  });

  test("a database error comes back with Postgres' fields", async () => {
    const pg = await open();
    await pg.query("create table t (id int primary key)");
    await pg.query("insert into t values (1)");
    const err = await pg.query("insert into t values (1)").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: "23505", constraint: "t_pkey", message: expect.stringContaining("duplicate key") });
  });

  test("a statement from outside an open transaction waits for it, as on one connection", async () => {
    const pg = await open();
    await pg.query("create table t (id int)");
    const seen: string[] = [];
    let outside: Promise<unknown> | undefined;
    await pg.transaction(async (tx) => {
      await tx.query("insert into t values (1)");
      outside = pg.query("select count(*)::int as n from t").then((r) => {
        seen.push("outside");
        return r;
      });
      // Give the outside statement every chance to run early.
      await new Promise((r) => setTimeout(r, 50));
      await tx.query("insert into t values (2)");
      seen.push("transaction");
    });
    expect(((await outside) as Rows).rows).toEqual([{ n: 2 }]);
    expect(seen).toEqual(["transaction", "outside"]);
  });

  test("a transaction whose function throws is rolled back and the error passed on", async () => {
    const pg = await open();
    await pg.query("create table t (id int)");
    const err = await pg
      .transaction(async (tx) => {
        await tx.query("insert into t values (1)");
        throw new Error("changed my mind");
      })
      .catch((e: unknown) => e);
    expect((err as Error).message).toBe("changed my mind");
    expect(((await pg.query("select count(*)::int as n from t")) as Rows).rows).toEqual([{ n: 0 }]);
    // The database is free again: a new transaction runs.
    await pg.transaction((tx) => tx.query("insert into t values (3)"));
    expect(((await pg.query("select id from t")) as Rows).rows).toEqual([{ id: 3 }]);
  });

  test("after its thread ends, a call fails with why instead of waiting for ever", async () => {
    const pg = await PGliteThread.open({ startParams: [...PGlite.defaultStartParams] });
    await pg.close();
    await expect(pg.query("select 1")).rejects.toThrow(/embedded database's thread ended/);
  }, 120_000);

  test("a parser it cannot apply is refused, not silently ignored", async () => {
    const pg = await open();
    expect(() => pg.query("select 1", [], { parsers: { 23: (v) => Number(v) * 2 } })).toThrow(/type 23/);
  });

  test("a process that never closes its database still exits", async () => {
    const code = `import { PGlite } from "@electric-sql/pglite";
import { PGliteThread } from ${JSON.stringify(new URL("./client.ts", import.meta.url).pathname)};
const pg = await PGliteThread.open({ startParams: [...PGlite.defaultStartParams] });
const { rows } = await pg.query("select 7 as n");
console.log(rows[0].n);`;
    const started = Date.now();
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], { timeout: 60_000 });
    expect(stdout.trim()).toBe("7");
    // Not killed by the timeout: it ended by itself.
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 90_000);
});
