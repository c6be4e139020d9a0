import { describe, expect, it } from "vitest";
import { loadFailure, oneLine } from "./errors.ts";

describe("an error on one line", () => {
  it("keeps the line that says where and what after a first line that only introduces it", () => {
    expect(oneLine('Transform failed with 1 error:\n/p/sluice.config.ts:1:16: ERROR: Expected identifier but found "{"\n  more')).toBe(
      'Transform failed with 1 error: /p/sluice.config.ts:1:16: ERROR: Expected identifier but found "{"',
    );
    expect(oneLine("no such file\n    at open (node:fs)")).toBe("no such file");
  });

  it("says what to do about a TypeScript file loaded as CommonJS", () => {
    const cycle = new Error("Cannot require() ES Module /tmp/tt.ts in a cycle. A cycle involving require(esm) is not allowed to maintain invariants mandated by the ECMAScript specification.");
    expect(loadFailure(cycle)).toBe('it was loaded as CommonJS (no package.json with "type": "module" above it): name it .mts, or add one');
    expect(loadFailure(new Error("Unexpected token"))).toBe("Unexpected token");
  });
});
