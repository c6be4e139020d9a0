import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pipeline from "../pipelines/ticket-triage.ts";
import { DeterministicError } from "../src/core/errors.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { costOf } from "../src/providers/prices.ts";
import { deadLetters } from "../src/store/reports.ts";
import { runPipelineForTest, singleProvider, testDrivers, type TestDatabase, type TestRun } from "../src/testing/index.ts";
import { createConsoleApp } from "../src/ui/app.ts";
import { demoSlice } from "./e2e/data.ts";

/**
 * The console in-process (Hono's `app.request`), on both drivers: every page
 * answers, figures match the run, it is read-only unless told otherwise, and
 * it answers to loopback names only. The browser test walks it for real.
 */

const local = "http://127.0.0.1:4873";

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`sluice ui pages on ${driver.name}${driver.skip ? ` (${driver.skip})` : ""}`, () => {
    let store: TestDatabase;
    let run: TestRun;
    beforeAll(async () => {
      store = await driver.open();
      // One failure in ten is deterministic, so the run has dead letters to show.
      const inner = createInProcessProvider();
      let n = 0;
      const provider = {
        name: inner.name,
        complete: async (...args: Parameters<typeof inner.complete>) => {
          if (++n % 10 === 0) throw new DeterministicError("400 invalid request: <script>alert(1)</script>");
          return inner.complete(...args);
        },
      };
      run = await runPipelineForTest(pipeline, { input: demoSlice(80), db: store.db, providers: singleProvider(provider, (model, usage, mode) => costOf(model, usage, mode)) });
    }, 120_000);
    afterAll(async () => {
      await run?.close();
      await store?.drop();
    });

    it("serves runs, a run's report, its items, an item, dead letters and pipelines", async () => {
      const app = createConsoleApp({ db: store.db });
      const { runId } = run.summary;
      const get = async (path: string) => {
        const res = await app.request(`${local}${path}`);
        expect(res.status, path).toBe(200);
        expect(res.headers.get("content-security-policy"), path).toContain("default-src 'none'");
        return res.text();
      };
      expect(await get("/runs")).toContain(runId);
      const report = await get(`/runs/${runId}`);
      expect(report).toContain(`data-metric="costUsd" data-value="${run.summary.costUsd}"`);
      expect((report.match(/<svg/g) ?? []).length).toBeGreaterThanOrEqual(5);
      expect(await get(`/runs/${runId}/items`)).toContain("T-00001");
      const committed = Object.entries(await run.statuses("commit")).find(([, st]) => st === "committed")![0];
      const item = await get(`/runs/${runId}/items/${committed}`);
      expect(item).toContain('data-stage="classify"');
      expect(item).toMatch(/gpt-4o-mini/);
      const letters = await deadLetters(store.db, runId);
      expect(letters.length).toBeGreaterThan(0);
      const dlq = await get(`/runs/${runId}/dead-letters`);
      expect(dlq).toContain(letters[0]!.item_id);
      // The provider's message is shown as text, never as markup.
      expect(dlq).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
      expect(dlq).not.toContain("<script>");
      expect(await get("/dead-letters")).toContain(runId);
      expect(await get("/pipelines")).toContain("ticket-triage");
      expect(await get("/pipelines/ticket-triage")).toContain("extract");
      expect((await app.request(`${local}/runs/run_nope`)).status).toBe(404);
      expect((await app.request(`${local}/runs/${runId}/items/nope`)).status).toBe(404);
    });

    it("is read-only unless started with --allow-writes, and takes posts from its own pages only", async () => {
      const { runId } = run.summary;
      const requeue = `${local}/runs/${runId}/dead-letters/requeue`;
      const form = { "content-type": "application/x-www-form-urlencoded" };
      const before = (await deadLetters(store.db, runId)).length;
      const readOnly = createConsoleApp({ db: store.db });
      expect(await (await readOnly.request(`${local}/runs/${runId}/dead-letters`)).text()).not.toContain("<form");
      expect((await readOnly.request(requeue, { method: "POST", headers: { ...form, origin: local } })).status).toBe(403);
      const writable = createConsoleApp({ db: store.db, allowWrites: true });
      expect((await writable.request(requeue, { method: "POST", headers: { ...form, origin: "http://evil.example" } })).status).toBe(403);
      expect((await deadLetters(store.db, runId)).length).toBe(before);
      const res = await writable.request(requeue, { method: "POST", headers: { ...form, origin: local } });
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe(`/runs/${runId}/dead-letters?requeued=${before}`);
      expect((await deadLetters(store.db, runId)).length).toBe(0);
    });

    it("answers to loopback host names only", async () => {
      const app = createConsoleApp({ db: store.db });
      expect((await app.request("http://localhost:4873/runs")).status).toBe(200);
      expect((await app.request("http://attacker.example:4873/runs")).status).toBe(403);
    });
  });
}
