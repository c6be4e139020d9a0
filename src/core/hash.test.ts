import { describe, expect, it } from "vitest";
import { hashValue, stableStringify } from "./hash.ts";

describe("hashValue", () => {
  it("keeps the hashes already stored", () => {
    // Hashes earlier versions stored for these values: a change here would make every stored output look stale.
    const stored: [unknown, string][] = [
      [{ b: 1, a: [1, "x", null] }, "26417a223ab477f8e008da7934835a26"],
      [{ "10": 1, "9": 2, a: { z: "é", y: [true, false] } }, "bd5a6093b9beacd800e1fa3e8de7fbe8"],
      ["plain", "945603a8f587786b463c3f94fce115c0"],
      [42, "73475cb40a568e8da8a045ced110137e"],
      [[{ k: undefined, j: 1.5 }], "532a4a830aaf17acd71d671204df9b46"],
      [{ itemId: "T-1", content: "abc", upstream: { classify: "f00" }, endpoint: "openai@simulator" }, "06ba42acc67e2ebc17e7df4b6a59e7ca"],
    ];
    for (const [value, hash] of stored) {
      expect(hashValue(value, 32)).toBe(hash);
      expect(hashValue(value)).toBe(hash.slice(0, 16));
    }
  });
});

/** The definition stableStringify must match: JSON.stringify of a copy with keys inserted in sorted order. */
function reference(value: unknown): string {
  const sortKeys = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (v !== null && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(v).sort()) {
        const member = (v as Record<string, unknown>)[key];
        if (member !== undefined) out[key] = sortKeys(member);
      }
      return out;
    }
    return v;
  };
  return JSON.stringify(sortKeys(value));
}

describe("stableStringify", () => {
  it("matches JSON.stringify of a key-sorted copy, edge cases included", () => {
    const values: unknown[] = [
      null,
      0,
      -0,
      1e21,
      Number.NaN,
      Infinity,
      "quote \" backslash \\ newline \n \u2028 é 😀",
      true,
      [],
      {},
      [undefined, () => 1, Symbol("s"), null, 1],
      { f: () => 1, s: Symbol("s"), u: undefined, n: null },
      { b: 1, a: 2, "10": 3, "9": 4, "01": 5, "4294967295": 6, "4294967294": 7, "-1": 8, "1.5": 9, "": 10 },
      { date: new Date(0), nested: [{ z: 1, y: [{ x: undefined, w: "v" }] }] },
      Object.assign(Object.create(null), { b: 1, a: 2 }),
      { ["__proto__"]: 1, ok: 2 },
      JSON.parse('{"__proto__": {"x": 1}, "a": 1}'),
      new String("boxed"),
    ];
    for (const value of values) expect(stableStringify(value)).toBe(reference(value));
    expect(stableStringify(undefined)).toBe(reference(undefined));
  });

  it("matches on random nested values", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const keys = ["a", "b", "10", "2", "z", "_", "0", "émoji"];
    const gen = (depth: number): unknown => {
      const r = rand();
      if (depth > 3 || r < 0.3) return [null, 1.25, -3, "s", true, undefined][Math.floor(rand() * 6)];
      if (r < 0.6) return Array.from({ length: Math.floor(rand() * 4) }, () => gen(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(rand() * 5) }, () => [keys[Math.floor(rand() * keys.length)]!, gen(depth + 1)]));
    };
    for (let i = 0; i < 2000; i++) {
      const value = gen(0);
      expect(stableStringify(value)).toBe(reference(value));
    }
  });
});
