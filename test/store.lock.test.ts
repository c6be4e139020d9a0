import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../src/store/index.ts";

describe("the embedded store's lock", () => {
  it("refuses a second opener while the first holds it, and takes over a lock whose process is gone", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "sluice-lock-")), "pglite");
    // A lock left by a process that no longer exists (kill -9).
    mkdirSync(join(dir, ".."), { recursive: true });
    writeFileSync(`${dir}.lock`, "999999");
    const first = await openDatabase({ dataDir: dir });
    try {
      // Another live process holds it (our parent stands in for one).
      writeFileSync(`${dir}.lock`, String(process.ppid));
      await expect(openDatabase({ dataDir: dir })).rejects.toThrow(/in use by another sluice process/);
    } finally {
      writeFileSync(`${dir}.lock`, String(process.pid));
      await first.close();
    }
  });
});
