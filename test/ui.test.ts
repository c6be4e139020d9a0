import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pipeline from "../pipelines/ticket-triage.ts";
import { DeterministicError } from "../src/core/errors.ts";
import { sha256 } from "../src/core/hash.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { costOf } from "../src/providers/prices.ts";
import { deadLetters } from "../src/store/reports.ts";
import { itemPage } from "../src/store/run-details.ts";
import { runPipelineForTest, singleProvider, testDrivers, type TestDatabase, type TestRun } from "../src/testing/index.ts";
import { listReview } from "../src/inspect/review.ts";
import type { QueueRow } from "../src/store/reviews.ts";
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
      // About one request in ten fails deterministically, so the run has dead letters to show; about one
      // classification in four comes back unsure, so items wait for review. Which ones is decided by the
      // request's content, not by the order calls happen to be made in, so every run of this test sees the
      // same items fail and wait.
      const inner = createInProcessProvider();
      const provider = {
        name: inner.name,
        complete: async (...args: Parameters<typeof inner.complete>) => {
          const h = Number.parseInt(sha256(JSON.stringify(args[0].messages)).slice(0, 8), 16);
          if (h % 10 === 0) throw new DeterministicError("400 invalid request: <script>alert(1)</script>");
          const answer = await inner.complete(...args);
          if (h % 4 === 1 && /"confidence"/.test(answer.text)) return { ...answer, text: JSON.stringify({ ...JSON.parse(answer.text), confidence: 0.42 }) };
          return answer;
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
      expect((await app.request(`${local}/pipelines/nope`)).status).toBe(404);
      // A NUL names nothing (Postgres text cannot hold one): not found, not a failed statement.
      for (const path of ["/runs/%00", `/runs/${runId}/items/%00`, "/pipelines/%00", `/runs/${runId}/items?after=%00`, `/runs/${runId}/items?before=%00`]) expect((await app.request(`${local}${path}`)).status, path).toBe(404);
      expect((await app.request(`${local}/runs/%E0%A4%A`)).status).toBe(400);
    });

    it("pages a run's items both ways, and says where the rows that did not become items are", async () => {
      const app = createConsoleApp({ db: store.db });
      const { runId } = run.summary;
      const ids = (await itemPage(store.db, runId, { limit: 1000 })).map((r) => r.item_id);
      expect(ids.length).toBeGreaterThan(20);
      // The store's pages: forwards after an id, backwards before one, each in id order.
      const second = await itemPage(store.db, runId, { after: ids[9], limit: 10 });
      expect(second.map((r) => r.item_id)).toEqual(ids.slice(10, 20));
      expect((await itemPage(store.db, runId, { before: ids[10], limit: 10 })).map((r) => r.item_id)).toEqual(ids.slice(0, 10));
      expect((await itemPage(store.db, runId, { before: ids[5], limit: 10 })).map((r) => r.item_id)).toEqual(ids.slice(0, 5));
      const page = async (q: string) => (await app.request(`${local}/runs/${runId}/items${q}`)).text();
      const rest = await page(`?after=${ids[9]}`);
      expect(rest).toContain(`href="/runs/${runId}/items?before=${ids[10]}"`);
      expect(rest).not.toContain("next 100");
      const first = await page(`?before=${ids[10]}`);
      expect(first).not.toContain("previous 100");
      expect(first).toContain(`href="/runs/${runId}/items?after=${ids[9]}"`);
      for (const id of ids.slice(0, 10)) expect(first).toContain(`>${id}</a>`);
      expect(first).not.toContain(`>${ids[10]}</a>`);
      const all = await page("");
      expect(all).not.toMatch(/previous 100|next 100/);
      const rejected = run.summary.items.byStatus.quarantined ?? 0;
      if (rejected) expect(all).toContain(`${rejected} quarantined`);
      expect(all.includes(`href="/runs/${runId}#quarantine"`)).toBe(rejected + (run.summary.items.byStatus.deduplicated ?? 0) > 0);
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

    it("shows the review queue and one item's review, and decides through the same function as sluice review", async () => {
      const { runId } = run.summary;
      const waiting = await listReview(store.db, runId);
      expect(waiting.length, "the slice has items in review").toBeGreaterThan(1);
      const [first, second] = waiting as [QueueRow, QueueRow];
      const readOnly = createConsoleApp({ db: store.db });
      const get = async (app: ReturnType<typeof createConsoleApp>, path: string, expected = 200) => {
        const res = await app.request(`${local}${path}`);
        expect(res.status, path).toBe(expected);
        return res.text();
      };
      expect(await get(readOnly, "/review")).toContain(runId);
      expect(await get(readOnly, `/runs/${runId}`)).toContain(`href="/runs/${runId}/review"`);
      const queue = await get(readOnly, `/runs/${runId}/review`);
      for (const q of waiting) expect(queue).toContain(q.item_id);
      expect(queue).toContain(first.reason!.replace(/</g, "&lt;").slice(0, 30));
      expect(queue).not.toContain('method="post"');
      const filtered = await get(readOnly, `/runs/${runId}/review?stage=${first.stage_id}&reason=${encodeURIComponent(first.reason!.slice(0, 12))}`);
      expect(filtered).toContain(first.item_id);
      expect(await get(readOnly, `/runs/${runId}/items/${first.item_id}`)).toContain(`/runs/${runId}/review/${first.item_id}`);
      const itemView = await get(readOnly, `/runs/${runId}/review/${first.item_id}`);
      expect(itemView).toContain('data-stage="classify"');
      expect(itemView).toContain(`sluice review approve|reject ${runId} ${first.item_id}`);
      expect(itemView).not.toContain("<form");

      const form = { "content-type": "application/x-www-form-urlencoded" };
      const post = (app: ReturnType<typeof createConsoleApp>, path: string, fields: Record<string, string>, origin = local) =>
        app.request(`${local}${path}`, { method: "POST", headers: { ...form, origin }, body: new URLSearchParams(fields).toString() });
      const approve = { decision: "approve", by: "alice", note: "looked fine" };
      expect((await post(readOnly, `/runs/${runId}/review/${first.item_id}`, approve)).status).toBe(403);
      // Started as `sluice ui` starts it: with the runs' pipelines, so decisions are checked as the CLI checks them.
      const writable = createConsoleApp({ db: store.db, allowWrites: true, pipelineOf: async () => pipeline });
      expect((await post(writable, `/runs/${runId}/review/${first.item_id}`, approve, "http://evil.example")).status).toBe(403);
      expect(await listReview(store.db, runId)).toHaveLength(waiting.length);
      expect(await get(writable, `/runs/${runId}/review/${first.item_id}`)).toContain('name="decision" value="approve"');

      // Fields filled in but Approve pressed: refused, the form kept, nothing recorded.
      const mixed = await post(writable, `/runs/${runId}/review/${first.item_id}`, { ...approve, edits: "amount=12.5" });
      expect(mixed.status).toBe(400);
      expect(await mixed.text()).toContain("taken by Edit only");
      const res = await post(writable, `/runs/${runId}/review/${first.item_id}`, approve);
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe(`/runs/${runId}/review/${second.item_id}?done=approve&items=${first.item_id}&by=alice`);
      // An edit of the row's key, or of a field the row does not have, is refused with the reason, and nothing recorded.
      for (const [edits, reason] of [["ticket_id=T-1", "ticket_id is the key of ticket_triage&#39;s rows"], ["ordr_id=ORD-9", "&quot;ordr_id&quot; is not a field of the row ticket_triage gets"]] as const) {
        const refused = await post(writable, `/runs/${runId}/review/${second.item_id}`, { decision: "edit", by: "bob", note: "", edits });
        expect(refused.status, edits).toBe(400);
        expect(await refused.text()).toContain(reason);
      }
      const edited = await post(writable, `/runs/${runId}/review/${second.item_id}`, { decision: "edit", by: "bob", note: "", edits: "order_id=ORD-1234\namount=12.5" });
      expect(edited.status).toBe(303);
      const decided = await listReview(store.db, runId, { decided: true });
      expect(decided.find((q) => q.item_id === first.item_id)).toMatchObject({ decision: "approve", reviewer: "alice", applied: false, status: "needs_review" });
      expect(decided.find((q) => q.item_id === second.item_id)).toMatchObject({ decision: "edit", reviewer: "bob" });
      const after = await get(writable, `/runs/${runId}/review?done=approve&items=${first.item_id}&by=alice`);
      expect(after).toContain(`Approved ${first.item_id} (by alice).`);
      expect(after).toContain(`sluice commit ${runId}`);
      // In bulk only by a filter.
      expect((await post(writable, `/runs/${runId}/review`, { decision: "reject", by: "carol" })).status).toBe(400);
    });

    it("answers to loopback host names only", async () => {
      const app = createConsoleApp({ db: store.db });
      expect((await app.request("http://localhost:4873/runs")).status).toBe(200);
      expect((await app.request("http://attacker.example:4873/runs")).status).toBe(403);
    });
  });
}
