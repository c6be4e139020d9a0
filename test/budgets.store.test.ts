import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adjustSpend, budgetRows, releaseHolder, releaseStaleReservations, setBudgetCaps } from "../src/store/budgets.ts";
import { heartbeat } from "../src/store/workers.ts";
import { BudgetGate, SETTLE_EVERY_MS } from "../src/engine/budget.ts";
import { openDatabase } from "../src/store/index.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";

/** The budget statements, on every driver: reservations fit under the cap, settle, and are released. */
for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`budgets on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeAll(async () => {
      t = await driver.open();
    });
    afterAll(async () => {
      await t?.drop();
    });
    const one = async (key: string) => (await budgetRows(t.db, [key]))[0]!;

    it("grants asks in order while they fit, and settling frees what a call did not cost", async () => {
      await setBudgetCaps(t.db, [{ key: "run:a", capUsd: 1 }]);
      const first = await adjustSpend(t.db, { holder: "w1", runId: "a", ask: { keys: ["run:a"], amounts: [0.3, 0.3, 0.3, 0.3] } });
      expect(first.granted).toBe(3);
      expect(await one("run:a")).toMatchObject({ capUsd: 1, spentUsd: 0, reservedUsd: expect.closeTo(0.9, 9) });
      // Nothing more fits until a call settles.
      expect((await adjustSpend(t.db, { holder: "w1", runId: "a", ask: { keys: ["run:a"], amounts: [0.2] } })).granted).toBe(0);
      // One call cost 0.1 of its 0.3: settled, and the next ask fits in the same statement.
      const next = await adjustSpend(t.db, { holder: "w1", runId: "a", settle: [{ key: "run:a", releaseUsd: 0.3, spendUsd: 0.1 }], ask: { keys: ["run:a"], amounts: [0.2] } });
      expect(next.granted).toBe(1);
      expect(next.budgets[0]).toMatchObject({ spentUsd: expect.closeTo(0.1, 9), reservedUsd: expect.closeTo(0.8, 9) });
    });

    it("refuses an ask unless it fits under every budget it counts against", async () => {
      await setBudgetCaps(t.db, [{ key: "run:b", capUsd: 5 }, { key: "day:p:2025-01-01", capUsd: 0.5 }]);
      const keys = ["run:b", "day:p:2025-01-01"];
      expect((await adjustSpend(t.db, { holder: "w2", runId: "b", ask: { keys, amounts: [0.4, 0.4] } })).granted).toBe(1);
      expect((await one("run:b")).reservedUsd).toBeCloseTo(0.4, 9);
      // An unknown key (no cap recorded) grants nothing.
      expect((await adjustSpend(t.db, { holder: "w2", runId: "b", ask: { keys: ["run:b", "run:nope"], amounts: [0.01] } })).granted).toBe(0);
      // A cap set again replaces the old one; without overwrite it stays.
      await setBudgetCaps(t.db, [{ key: "day:p:2025-01-01", capUsd: 2 }]);
      await setBudgetCaps(t.db, [{ key: "day:p:2025-01-01", capUsd: 9 }], { overwrite: false });
      expect((await one("day:p:2025-01-01")).capUsd).toBe(2);
      expect((await adjustSpend(t.db, { holder: "w2", runId: "b", ask: { keys, amounts: [0.4] } })).granted).toBe(1);
    });

    it("releases a batch's whole reservation once, adding what it cost", async () => {
      await setBudgetCaps(t.db, [{ key: "run:c", capUsd: 1 }]);
      expect((await adjustSpend(t.db, { holder: "batch:x@openai", runId: "c", ask: { keys: ["run:c"], amounts: [0.2, 0.2, 0.2] } })).granted).toBe(3);
      expect(await releaseHolder(t.db, "batch:x@openai", 0.25)).toBe(true);
      expect(await one("run:c")).toMatchObject({ spentUsd: expect.closeTo(0.25, 9), reservedUsd: expect.closeTo(0, 9) });
      // Collected again after a crash: nothing held, nothing added.
      expect(await releaseHolder(t.db, "batch:x@openai", 0.25)).toBe(false);
      expect((await one("run:c")).spentUsd).toBeCloseTo(0.25, 9);
    });

    it("releases what a worker without a heartbeat held, and a settlement after that does not release it twice", async () => {
      await setBudgetCaps(t.db, [{ key: "run:d", capUsd: 1 }]);
      await heartbeat(t.db, "alive", "d");
      await adjustSpend(t.db, { holder: "alive", runId: "d", ask: { keys: ["run:d"], amounts: [0.3] } });
      await adjustSpend(t.db, { holder: "dead", runId: "d", ask: { keys: ["run:d"], amounts: [0.5] } });
      expect((await one("run:d")).reservedUsd).toBeCloseTo(0.8, 9);
      await releaseStaleReservations(t.db, "me", 30_000);
      expect((await one("run:d")).reservedUsd).toBeCloseTo(0.3, 9);
      // The "dead" worker was only slow: its call settles; what it paid counts, its reservation is not released again.
      await adjustSpend(t.db, { holder: "dead", runId: "d", settle: [{ key: "run:d", releaseUsd: 0.5, spendUsd: 0.2 }] });
      expect(await one("run:d")).toMatchObject({ spentUsd: expect.closeTo(0.2, 9), reservedUsd: expect.closeTo(0.3, 9) });
      // On embedded PGlite every other holder is a dead process's.
      await releaseStaleReservations(t.db, "me", 30_000, true);
      expect((await one("run:d")).reservedUsd).toBeCloseTo(0, 9);
    });

    it("a gate sends what its calls cost soon after they end, keeping its allowance, so a process killed later loses none of it", async () => {
      await setBudgetCaps(t.db, [{ key: "run:e", capUsd: 10 }]);
      const providers = { defaultProvider: "none", get: () => { throw new Error("no calls here"); }, cost: () => 0 };
      const gate = new BudgetGate({ db: t.db, pipelineId: "p", runId: "e", holder: "w-e", runKey: "run:e", leaseMs: 30_000, providers, logger: { debug() {}, info() {}, warn() {} } });
      // The first ask takes a statement, which also reserves an allowance ahead; the second draws on it.
      const first = await gate.reserve(0.01);
      const held = (await one("run:e")).reservedUsd;
      expect(held).toBeGreaterThan(0.02);
      const second = await gate.reserve(0.01);
      gate.settle(first, 0.004);
      gate.settle(second, 0.002);
      // No other ask comes, and the gate is not closed: the settlements go out on their own.
      const deadline = Date.now() + 60_000;
      while ((await one("run:e")).spentUsd === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, SETTLE_EVERY_MS / 4));
      expect(await one("run:e")).toMatchObject({ spentUsd: expect.closeTo(0.006, 9), reservedUsd: expect.closeTo(held - 0.02, 9) });
      // Closed, the gate gives back the allowance it did not use.
      await gate.close();
      expect(await one("run:e")).toMatchObject({ spentUsd: expect.closeTo(0.006, 9), reservedUsd: expect.closeTo(0, 9) });
    }, 120_000);
  });
}

const url = process.env.DATABASE_URL;
describe.skipIf(!url)(`budget reservations from many connections at once${url ? "" : " (skipped: DATABASE_URL is not set)"}`, () => {
  it("never grants past the cap, and reserved always equals what the holders hold", async () => {
    const { freshPostgres } = await import("../src/testing/databases.ts");
    const pg = await freshPostgres(url!);
    const pools = await Promise.all(Array.from({ length: 4 }, () => openDatabase({ url: pg.url! })));
    try {
      const keys = ["run:z", "day:z:2025-01-01"];
      await setBudgetCaps(pg.db, [{ key: "run:z", capUsd: 3 }, { key: "day:z:2025-01-01", capUsd: 2.5 }]);
      // 4 pools x 6 holders, each reserving, then settling at a random share of what it reserved, 15 times.
      let granted = 0;
      const holder = async (db: typeof pg.db, name: string) => {
        for (let i = 0; i < 15; i++) {
          const amount = 0.01 + ((i * 7 + name.length) % 10) / 100;
          const r = await adjustSpend(db, { holder: name, runId: "z", ask: { keys, amounts: [amount] } });
          if (r.granted === 0) continue;
          granted++;
          const [run, day] = r.budgets;
          for (const b of [run, day]) expect(b!.spentUsd + b!.reservedUsd).toBeLessThanOrEqual(b!.capUsd + 1e-9);
          await adjustSpend(db, { holder: name, runId: "z", settle: keys.map((key) => ({ key, releaseUsd: amount, spendUsd: amount * 0.5 })) });
        }
      };
      await Promise.all(pools.flatMap((db, p) => Array.from({ length: 6 }, (_, h) => holder(db, `w${p}-${h}`))));
      expect(granted).toBeGreaterThan(0);
      const rows = await budgetRows(pg.db, keys);
      for (const b of rows) {
        expect(b.spentUsd).toBeLessThanOrEqual(b.capUsd + 1e-9);
        expect(b.reservedUsd).toBeCloseTo(0, 9);
      }
      // The day's cap (the lower) is what stopped the asks.
      expect(rows.find((b) => b.key.startsWith("day:"))!.spentUsd).toBeGreaterThan(2.5 - 0.2);
    } finally {
      for (const db of pools) await db.close();
      await pg.drop();
    }
  }, 120_000);
});
