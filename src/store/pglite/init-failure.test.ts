import { describe, expect, test } from "vitest";
import { initFailure } from "./index.ts";

/** What the child creating a data directory printed when it failed, as seen on a full disk. */
const fullDisk = `node:internal/modules/run_main:123
    triggerUncaughtException(
    ^
ErrnoError { name: 'ErrnoError', errno: 51 }

Node.js v20.20.2
`;

describe("why creating the embedded database failed", () => {
  test("a full disk is named, not Node's version line", () => {
    expect(initFailure(Object.assign(new Error("Command failed"), { stderr: fullDisk }))).toBe("no space left on the device (free some disk space and run again)");
  });
  test("another file system errno is given as such", () => {
    expect(initFailure({ stderr: fullDisk.replace("errno: 51", "errno: 63") })).toBe("file system error 63 (WASI errno) while writing it");
  });
  test("otherwise the error line, not the stack or the version", () => {
    const stderr = "file:///x.js:3\nError: Aborted(). Build with -sASSERTIONS for more info.\n    at abort (file:///x.js:9:1)\n\nNode.js v20.20.2\n";
    expect(initFailure({ stderr })).toBe("Error: Aborted(). Build with -sASSERTIONS for more info.");
  });
});
