import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testDrivers, type TestDatabase } from "../testing/databases.ts";
import { deepFreeze, storedForm } from "./json.ts";

/** storedForm must give what a jsonb column gives back: checked against the store itself. */
const values: unknown[] = [
  { category: "billing", confidence: 0.93 },
  { zeta: 1, at: new Date(0), gone: undefined, a: [1, undefined, () => 1, { y: 2, x: 1 }], nested: { bb: 1, a: 2, ccc: 3 } },
  { "10": "ten", "9": "nine", b: 1, aa: 2, "é": 3, e: 4, "😀": 5 },
  { n: -0, big: 1e21, small: 1e-7, nan: Number.NaN, inf: -Infinity, float: 0.1 + 0.2 },
  [{ b: 1, a: 2 }, "s", null, true],
  Object.assign(Object.create(null), { b: 1, a: 2 }),
  "plain",
  42,
  null,
];

for (const driver of testDrivers()) {
  describe.skipIf(Boolean(driver.skip))(`storedForm against jsonb on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let t: TestDatabase;
    beforeAll(async () => {
      t = await driver.open();
    });
    afterAll(async () => {
      await t?.drop();
    });

    it("equals a jsonb round trip, key order included", async () => {
      for (const value of values) {
        const [row] = await t.db.rows<{ v: unknown }>(sql`SELECT ${JSON.stringify(value)}::jsonb AS v`);
        const form = storedForm(value);
        expect(form).toEqual(row!.v);
        // Same keys in the same order, at every depth.
        expect(JSON.stringify(form)).toBe(JSON.stringify(row!.v));
      }
      expect(storedForm(undefined)).toBeNull();
    });
  });
}

describe("deepFreeze", () => {
  it("freezes every level, so a stage cannot change what later stages read", () => {
    const value = deepFreeze({ a: { b: [1, { c: 2 }] } });
    expect(Object.isFrozen(value.a.b[1])).toBe(true);
    expect(() => {
      (value.a.b[1] as { c: number }).c = 3;
    }).toThrow(TypeError);
  });
});
