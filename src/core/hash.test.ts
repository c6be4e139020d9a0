import { describe, expect, it } from "vitest";
import { hashValue } from "./hash.ts";

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

