import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createProvider } from "../src/providers/index.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { summarizeRun } from "../src/inspect/summary.ts";
import { openDatabase } from "../src/store/index.ts";
import { singleProvider } from "../src/testing/harness.ts";
import mini from "./fixtures/pipelines/mini.ts";

/**
 * A provider that fails every call (down, or not reachable at all): the
 * circuit opens and calls wait for it without spending attempts, with a line
 * saying so, and after `outageLimitMs` with no call getting through the stage
 * stops, its items queued, and the run fails saying why. It used to wait in
 * silence for as long as the provider was gone.
 */
describe("a provider that fails every call", () => {
  it("is said to be waited for, then stops the stage with the last error, its items queued", async () => {
    // A port nothing listens on: every call is refused.
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
    const provider = createProvider({ provider: "openai", apiKey: "sk-test-outage", baseURL: `http://127.0.0.1:${port}/v1`, env: {}, limiter: { breaker: { coolDownMs: 100, maxCoolDownMs: 200 } } });
    const dir = mkdtempSync(join(tmpdir(), "sluice-outage-"));
    const input = join(dir, "items.jsonl");
    writeFileSync(input, Array.from({ length: 40 }, (_, i) => JSON.stringify({ id: `o${i}`, text: `invoice charged twice #${i}` })).join("\n"));
    const db = await openDatabase({ dataDir: join(dir, "pglite") });
    const warnings: string[] = [];
    const logger = { debug() {}, info() {}, warn: (msg: string) => void warnings.push(msg) };
    try {
      const options = { outageLimitMs: 1_500, backoffBaseMs: 10, backoffMaxMs: 20 };
      await expect(runPipeline({ db, pipeline: mini, providers: singleProvider(provider), options, logger }, input)).rejects.toThrow(
        /^stage classify stopped: openai failed every call for \S+ \(openai\/gpt-4o-mini: circuit open after repeated provider failures \(last: .*(?:onnect|ECONNREFUSED).*\)\)\. Every call of the stage would fail alike, so its items stay queued/,
      );
      expect(warnings.some((w) => /circuit open after repeated provider failures \(last: .*\): calls wait for it, one probe at a time; the stage stops in \S+ if none gets through/.test(w))).toBe(true);
      const [row] = await db.rows<{ id: string }>(sql`SELECT id FROM runs`);
      const run = await summarizeRun(db, row!.id);
      expect(run.status).toBe("failed");
      // The status of the run says why.
      expect(run.error).toMatch(/^stage classify stopped: openai failed every call for /);
      // Waiting on the circuit spent no attempt: nothing was dead-lettered, the items wait for the provider.
      expect(run.items.byStatus.failed_terminal ?? 0).toBe(0);
      expect(run.items.byStatus.queued).toBeGreaterThan(0);
    } finally {
      await db.close();
    }
  }, 60_000);
});
