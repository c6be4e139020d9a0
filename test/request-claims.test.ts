import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_OPTIONS, silentLogger, type RunContext } from "../src/engine/context.ts";
import { InflightAnswers } from "../src/engine/inflight.ts";
import { planStages } from "../src/engine/plan.ts";
import { executeRealtime } from "../src/engine/realtime.ts";
import type { ItemResult } from "../src/engine/results.ts";
import { claimOrAwait, type Call } from "../src/engine/reuse.ts";
import type { LlmStage } from "../src/core/types.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import type { CompletionResult } from "../src/providers/types.ts";
import { cacheResponse, cacheResponses, claimRequests, releaseRequests } from "../src/store/cache.ts";
import { singleProvider } from "../src/testing/harness.ts";
import mini from "./fixtures/pipelines/mini.ts";
import { openDatabase, type Database } from "../src/store/index.ts";
import { heartbeat } from "../src/store/workers.ts";
import { freshPostgres, testDrivers, type TestDatabase } from "../src/testing/databases.ts";

/**
 * `request_claims`: a worker claims a request hash before paying for it, and
 * a payer writes the answer and gives its claim up together, so a worker
 * claiming the same request finds either the claim or the answer, never
 * neither.
 */
const LEASE_MS = 30_000;
const answer = (text: string) => ({ requestHash: "h-answered", provider: "openai", model: "gpt-4o-mini", response: { text } });

/** The payer's write: the answer in the cache and its claim given up, committed together (as `writeResults` does in one statement). */
async function answerAndRelease(db: Database, workerId: string, text: string, hold?: Promise<void>): Promise<void> {
  await db.transaction(async (tx) => {
    await cacheResponse(tx, answer(text));
    await releaseRequests(tx, ["h-answered"], workerId);
    await hold;
  });
}

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`request claims on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let store: TestDatabase;
    beforeAll(async () => {
      store = await driver.open();
      await heartbeat(store.db, "worker-a", "run-1");
      await heartbeat(store.db, "worker-b", "run-1");
    });
    afterAll(async () => {
      await store?.drop();
    });

    it("are won once while the payer is live, and answered from the cache once it has paid", async () => {
      expect(await claimRequests(store.db, ["h-answered", "h-open"], "worker-a", LEASE_MS)).toEqual({ won: new Set(["h-answered", "h-open"]), answers: new Map() });
      // Another live worker waits for both.
      expect(await claimRequests(store.db, ["h-answered", "h-open"], "worker-b", LEASE_MS)).toEqual({ won: new Set(), answers: new Map() });
      await answerAndRelease(store.db, "worker-a", "paid once");
      // The answered one is read, not won; the other is still worker-a's.
      expect(await claimRequests(store.db, ["h-answered", "h-open"], "worker-b", LEASE_MS)).toEqual({ won: new Set(), answers: new Map([["h-answered", { text: "paid once" }]]) });
      const claims = await store.db.rows<{ request_hash: string; worker_id: string }>(sql`SELECT request_hash, worker_id FROM request_claims ORDER BY request_hash`);
      expect(claims).toEqual([{ request_hash: "h-open", worker_id: "worker-a" }]);
    });
  });
}

/**
 * Two connections to one Postgres database. A claim statement reads the cache
 * in the snapshot it starts with, but its insert sees a claim given up by a
 * transaction that commits after that snapshot: unless the claimer looks at
 * the cache again, it wins a request whose answer is already stored, and
 * pays for it a second time.
 */
describe.skipIf(!process.env.DATABASE_URL)("a request claimed while its payer commits the answer (Postgres, two connections)", () => {
  it("is answered from the cache, not won and paid for again", async () => {
    const pg = await freshPostgres(process.env.DATABASE_URL!);
    const other = await openDatabase({ url: pg.url! });
    try {
      await heartbeat(pg.db, "worker-a", "run-1");
      await heartbeat(pg.db, "worker-b", "run-1");
      expect((await claimRequests(pg.db, ["h-answered"], "worker-a", LEASE_MS)).won).toEqual(new Set(["h-answered"]));

      // worker-a writes its answer and gives the claim up, and holds the transaction open...
      let commit!: () => void;
      const held = new Promise<void>((resolve) => (commit = resolve));
      const paid = answerAndRelease(pg.db, "worker-a", "paid once", held);
      await until(pg.db, sql`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.datname = current_database() AND l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND a.state = 'idle in transaction'`);
      // ...while worker-b's claim starts: its snapshot has no answer, and its insert waits on worker-a's claim row.
      const claiming = claimRequests(other, ["h-answered"], "worker-b", LEASE_MS);
      await until(pg.db, sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
      commit();
      await paid;

      const { won, answers } = await claiming;
      expect(answers).toEqual(new Map([["h-answered", { text: "paid once" }]]));
      expect(won).toEqual(new Set());
      // No claim is left behind for a request that is answered.
      expect(await pg.db.rows(sql`SELECT request_hash, worker_id FROM request_claims`)).toEqual([]);
    } finally {
      await other.close();
      await pg.drop();
    }
  }, 60_000);
});

describe.skipIf(!process.env.DATABASE_URL)("answers two statements write at once (Postgres, two connections)", () => {
  it("are inserted in hash order, so two writes sharing hashes wait for each other in turn, never each for the other", async () => {
    const pg = await freshPostgres(process.env.DATABASE_URL!);
    const other = await openDatabase({ url: pg.url! });
    const entry = (hash: string) => ({ requestHash: hash, provider: "openai", model: "gpt-4o-mini", response: { text: hash } });
    try {
      // One write has inserted "h-a" and holds its transaction open...
      let commit!: () => void;
      const held = new Promise<void>((resolve) => (commit = resolve));
      let first!: Promise<void>;
      const opened = new Promise<void>((ready) => {
        first = pg.db.transaction(async (tx) => {
          await cacheResponses(tx, [entry("h-a")]);
          ready();
          await held;
          // ...and then inserts "h-b", which the other write has too.
          await cacheResponses(tx, [entry("h-b")]);
        });
      });
      await opened;
      // The other write has the two in the opposite order: in that order it would insert "h-b" and then wait on
      // "h-a", while the first waits on its "h-b" (a deadlock, one of them failed by the server). In hash order,
      // it waits on "h-a" before inserting anything.
      const second = cacheResponses(other, [entry("h-b"), entry("h-a")]);
      await until(pg.db, sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
      commit();
      await Promise.all([first, second]);
      expect(await pg.db.rows(sql`SELECT request_hash FROM request_cache ORDER BY request_hash`)).toEqual([{ request_hash: "h-a" }, { request_hash: "h-b" }]);
    } finally {
      await other.close();
      await pg.drop();
    }
  }, 60_000);
});

/**
 * Two chunks of one process need the same request: the first is paying for
 * it (it holds the claim, for the whole process), the second takes the
 * first's answer in memory. The answer is in the request cache only once the
 * first chunk writes its results (in groups, up to `FLUSH_MS` later): until
 * then the claim must stay, or a process waiting for the request wins it,
 * finds no answer, and pays again.
 */
describe.skipIf(!process.env.DATABASE_URL)("a request one chunk takes from another chunk of its process in flight (Postgres)", () => {
  it("keeps the claim until the paying chunk writes the answer", async () => {
    const pg = await freshPostgres(process.env.DATABASE_URL!);
    try {
      const provider = createInProcessProvider();
      const ctx: RunContext = { db: pg.db, pipeline: mini, providers: singleProvider(provider), runId: "run-1", workerId: "worker-a", plan: planStages(mini), options: DEFAULT_OPTIONS, logger: silentLogger };
      const classify = mini.stages[1] as LlmStage;
      await heartbeat(pg.db, "worker-a", "run-1");
      await heartbeat(pg.db, "worker-b", "run-1");
      // The first chunk claimed the request and has its answer, not yet written.
      expect((await claimRequests(pg.db, ["h-shared"], "worker-a", LEASE_MS)).won).toEqual(new Set(["h-shared"]));
      const inflight = new InflightAnswers();
      const paid: CompletionResult = { text: JSON.stringify({ category: "billing", confidence: 0.9 }), finishReason: "stop", usage: { inputTokens: 10, outputTokens: 5 }, model: "gpt-4o-mini" };
      inflight.set("h-shared", Promise.resolve(paid));

      // The second chunk, through the same steps as a chunk's calls (execute.ts).
      const second: Call = { itemId: "r2", hash: "h-shared", request: { customId: "r2", model: "gpt-4o-mini", messages: [{ role: "user", content: "invoice charged twice" }], schema: { name: "Label", schema: classify.output!.schema }, params: {} }, loaded: { inputHash: "i2", input: { itemId: "r2", item: { id: "r2", text: "invoice charged twice" }, outputs: {} } } };
      const written: ItemResult[] = [];
      const write = async (results: ItemResult[]) => void written.push(...results);
      const hooks = { acquire: <T,>(fn: () => Promise<T>) => fn(), inflight };
      const { results } = await claimOrAwait(ctx, classify, [second], write, async (mine) => ({ results: await executeRealtime(ctx, classify, provider.name, provider, mine, hooks, write) }));
      expect(results.map((r) => [r.itemId, r.status, r.reused, r.attempts.length, r.output?.value])).toEqual([["r2", "succeeded_unvalidated", true, 0, { category: "billing", confidence: 0.9 }]]);
      expect(written.map((r) => r.itemId)).toEqual(["r2"]);
      expect(provider.calls).toBe(0);

      // The claim is still the first chunk's: another process waits instead of paying.
      expect(await pg.db.rows(sql`SELECT request_hash, worker_id FROM request_claims`)).toEqual([{ request_hash: "h-shared", worker_id: "worker-a" }]);
      expect(await claimRequests(pg.db, ["h-shared"], "worker-b", LEASE_MS)).toEqual({ won: new Set(), answers: new Map() });
    } finally {
      await pg.drop();
    }
  }, 60_000);
});

/** Wait until `query` counts at least one row (a state another connection reaches), looking every 20 ms. */
async function until(db: Database, query: ReturnType<typeof sql>): Promise<void> {
  for (;;) {
    const [row] = await db.rows<{ n: number }>(query);
    if (row!.n > 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}
