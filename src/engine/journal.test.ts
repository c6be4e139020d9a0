import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { budgetRows, setBudgetCaps } from "../store/budgets.ts";
import { cacheResponse, cachedResponses } from "../store/cache.ts";
import { insertRun } from "../store/runs.ts";
import { testDrivers, type TestDatabase } from "../testing/databases.ts";
import { AnswerJournal, replayJournals } from "./journal.ts";

/** The pid of a process that has exited, so its journal counts as left behind. */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout);
}

function chat(content: string, finish = "stop") {
  return JSON.stringify({ id: "c", object: "chat.completion", created: 0, model: "gpt-4o-mini", choices: [{ index: 0, finish_reason: finish, message: { role: "assistant", content, refusal: null } }], usage: { prompt_tokens: 5, completion_tokens: 3 } });
}

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`answer journal (${driver.name})`, () => {
    let store: TestDatabase | undefined;
    afterEach(async () => {
      await store?.drop();
    });

    it("puts a dead process's answers in the request cache: raw ones parsed, unusable ones left out, the later of two kept", async () => {
      store = await driver.open();
      const dir = mkdtempSync(join(tmpdir(), "sluice-journal-"));
      const journal = new AnswerJournal(dir);
      journal.recordRaw("h-raw", "openai", "gpt-4o-mini", { path: "/v1/chat/completions", body: chat('{"category":"bug"}') });
      journal.recordRaw("h-cut", "openai", "gpt-4o-mini", { path: "/v1/chat/completions", body: chat('{"categ', "length") });
      journal.recordRaw("h-prose", "openai", "gpt-4o-mini", { path: "/v1/chat/completions", body: chat("not json") });
      // A first answer that failed its check, then the engine's answer after the repair.
      journal.recordRaw("h-repaired", "openai", "gpt-4o-mini", { path: "/v1/chat/completions", body: chat('{"category":"nope"}') });
      journal.record({ requestHash: "h-repaired", provider: "openai", model: "gpt-4o-mini", response: { text: '{"category":"refund"}', finishReason: "stop", usage: { inputTokens: 9, outputTokens: 3 }, model: "gpt-4o-mini" } });
      journal.close({ written: false });
      // A journal of this live process is not touched; one of a dead process is.
      expect(await replayJournals(store.db, dir)).toEqual({ answers: 0, inFlight: [] });
      const [name] = readdirSync(dir);
      renameSync(join(dir, name!), join(dir, name!.replace(/^\d+/, String(deadPid()))));

      expect((await replayJournals(store.db, dir)).answers).toBe(2);
      const cached = await cachedResponses<{ text: string; usage: { inputTokens: number } }>(store.db, ["h-raw", "h-cut", "h-prose", "h-repaired"]);
      expect([...cached.keys()].sort()).toEqual(["h-raw", "h-repaired"]);
      expect(cached.get("h-raw")).toMatchObject({ text: '{"category":"bug"}', usage: { inputTokens: 5 } });
      expect(cached.get("h-repaired")!.text).toBe('{"category":"refund"}');
      expect(readdirSync(dir)).toEqual([]);

      // Answers the store holds already (the process wrote them before it stopped) are not counted as replayed.
      const later = new AnswerJournal(dir);
      later.recordRaw("h-raw", "openai", "gpt-4o-mini", { path: "/v1/chat/completions", body: chat('{"category":"bug"}') });
      later.recordRaw("h-new", "openai", "gpt-4o-mini", { path: "/v1/chat/completions", body: chat('{"category":"other"}') });
      later.close({ written: false });
      const [again] = readdirSync(dir);
      renameSync(join(dir, again!), join(dir, again!.replace(/^\d+/, String(deadPid()))));
      expect(await replayJournals(store.db, dir)).toEqual({ answers: 1, inFlight: [] });
    });

    it("replays a journal of more answers than one statement takes, the last usable answer of each request winning across them", async () => {
      store = await driver.open();
      const dir = mkdtempSync(join(tmpdir(), "sluice-journal-"));
      const journal = new AnswerJournal(dir);
      const N = 1_203;
      for (let i = 0; i < N; i++) journal.recordRaw(`h-${i}`, "openai", "gpt-4o-mini", { path: "/v1/chat/completions", body: chat(`{"n":${i}}`) });
      // Far apart in the file (more than a statement's 500 between them): a later answer to h-0, and a cut one to h-1 that must not replace its first.
      journal.recordRaw("h-0", "openai", "gpt-4o-mini", { path: "/v1/chat/completions", body: chat('{"n":"again"}') });
      journal.recordRaw("h-1", "openai", "gpt-4o-mini", { path: "/v1/chat/completions", body: chat('{"n', "length") });
      journal.close({ written: false });
      const [name] = readdirSync(dir);
      renameSync(join(dir, name!), join(dir, name!.replace(/^\d+/, String(deadPid()))));

      expect(await replayJournals(store.db, dir)).toEqual({ answers: N, inFlight: [] });
      const cached = await cachedResponses<{ text: string }>(store.db, Array.from({ length: N }, (_, i) => `h-${i}`));
      expect(cached.size).toBe(N);
      expect(cached.get("h-0")!.text).toBe('{"n":"again"}');
      expect(cached.get("h-1")!.text).toBe('{"n":1}');
      expect(cached.get(`h-${N - 1}`)!.text).toBe(`{"n":${N - 1}}`);
      expect(readdirSync(dir)).toEqual([]);
    });

    it("records in its run what a dead process paid and never wrote: answered calls at their usage's price, calls still out as lost", async () => {
      store = await driver.open();
      await insertRun(store.db, { id: "run_paid", pipelineId: "p", inputPath: "in.csv", fingerprint: "f", stages: [], options: {} });
      // One answer was written before the process died (its attempt is in the store already).
      await cacheResponse(store.db, { requestHash: "h-written", provider: "openai", model: "gpt-4o-mini", response: { text: "{}", finishReason: "stop", usage: { inputTokens: 5, outputTokens: 3 }, model: "gpt-4o-mini" } });
      const dir = mkdtempSync(join(tmpdir(), "sluice-journal-"));
      const journal = new AnswerJournal(dir);
      const of = (item: string, attempt = 1) => ({ run: "run_paid", stage: "classify", item, attempt, provider: "openai", model: "gpt-4o-mini" });
      const body = { path: "/v1/chat/completions", body: chat('{"category":"bug"}') };
      const first = journal.sending(of("i1", 2));
      journal.recordRaw("h-unwritten", "openai", "gpt-4o-mini", body, first, of("i1", 2));
      const second = journal.sending(of("i2"));
      journal.recordRaw("h-written", "openai", "gpt-4o-mini", body, second, of("i2"));
      journal.sending(of("i3"));
      journal.close({ written: false });
      const pid = deadPid();
      const [name] = readdirSync(dir);
      renameSync(join(dir, name!), join(dir, name!.replace(/^\d+/, String(pid))));

      const price = (_model: string, usage: { inputTokens: number; outputTokens: number }) => ({ costUsd: usage.inputTokens + 10 * usage.outputTokens, listCostUsd: 2 * (usage.inputTokens + 10 * usage.outputTokens) });
      expect(await replayJournals(store.db, dir, undefined, price)).toEqual({ answers: 1, inFlight: [{ pid, calls: 1 }] });
      const recorded = await store.db.rows<Record<string, unknown>>(
        sql`SELECT item_id, attempt, mode, request_hash, input_tokens, output_tokens, cost_usd, list_cost_usd, error_class, error_message FROM attempts WHERE run_id = 'run_paid' ORDER BY item_id`,
      );
      expect(recorded).toEqual([
        { item_id: "i1", attempt: 2, mode: "realtime", request_hash: "h-unwritten", input_tokens: 5, output_tokens: 3, cost_usd: 35, list_cost_usd: 70, error_class: null, error_message: null },
        { item_id: "i3", attempt: 1, mode: "realtime", request_hash: "", input_tokens: 0, output_tokens: 0, cost_usd: 0, list_cost_usd: 0, error_class: "transient", error_message: `in flight when process ${pid} stopped: paid, or about to be; its answer and cost are unknown` },
      ]);
    });

    it("counts in its budgets what the calls a dead process had out reserved, and nothing for calls that came back", async () => {
      store = await driver.open();
      await insertRun(store.db, { id: "run_held", pipelineId: "p", inputPath: "in.csv", fingerprint: "f", stages: [], options: {} });
      const [run, day] = ["run:run_held", "day:p:2026-12-07"];
      await setBudgetCaps(store.db, [{ key: run, capUsd: 1 }, { key: day, capUsd: 5 }]);
      const dir = mkdtempSync(join(tmpdir(), "sluice-journal-"));
      const journal = new AnswerJournal(dir);
      const of = (item: string) => ({ run: "run_held", stage: "classify", item, attempt: 1, provider: "openai", model: "gpt-4o-mini" });
      const answered = journal.sending(of("i1"), { amountUsd: 0.5, keys: [day, run] });
      journal.recordRaw("h-answered", "openai", "gpt-4o-mini", { path: "/v1/chat/completions", body: chat('{"category":"bug"}') }, answered, of("i1"));
      journal.ended(journal.sending(of("i2"), { amountUsd: 0.25, keys: [day, run] }));
      journal.sending(of("i3"), { amountUsd: 0.125, keys: [day, run] });
      journal.sending(of("i4"), { amountUsd: 0.0625, keys: [run] });
      journal.sending(of("i5"));
      journal.close({ written: false });
      const pid = deadPid();
      const [name] = readdirSync(dir);
      renameSync(join(dir, name!), join(dir, name!.replace(/^\d+/, String(pid))));

      const price = () => ({ costUsd: 0.01, listCostUsd: 0.01 });
      expect(await replayJournals(store.db, dir, undefined, price)).toEqual({ answers: 1, inFlight: [{ pid, calls: 3 }] });
      // Only calls still out: one that came back was settled by its process, unless the kill came first (the journal cannot tell which, so it adds nothing for it).
      expect((await budgetRows(store.db, [day, run])).map((b) => [b.key, b.spentUsd])).toEqual([
        [day, 0.125],
        [run, 0.1875],
      ]);
      const lost = await store.db.rows<{ item_id: string; cost_usd: number; error_message: string }>(
        sql`SELECT item_id, cost_usd, error_message FROM attempts WHERE run_id = 'run_held' AND error_class IS NOT NULL ORDER BY item_id`,
      );
      const unknown = `in flight when process ${pid} stopped: paid, or about to be; its answer and cost are unknown`;
      expect(lost).toEqual([
        { item_id: "i3", cost_usd: 0, error_message: `${unknown} (its budgets count the $0.1250 reserved for it)` },
        { item_id: "i4", cost_usd: 0, error_message: `${unknown} (its budgets count the $0.0625 reserved for it)` },
        { item_id: "i5", cost_usd: 0, error_message: unknown },
      ]);
    });

    it("counts the calls a dead process had sent that never came back", async () => {
      store = await driver.open();
      const dir = mkdtempSync(join(tmpdir(), "sluice-journal-"));
      const journal = new AnswerJournal(dir);
      // Four calls out: one answered (its raw answer says it ended), one failed (ended), two still out when the process died.
      const answered = journal.sending();
      const failed = journal.sending();
      journal.sending();
      journal.recordRaw("h-ok", "openai", "gpt-4o-mini", { path: "/v1/chat/completions", body: chat('{"category":"bug"}') }, answered);
      journal.ended(failed);
      journal.sending();
      journal.close({ written: false });
      const pid = deadPid();
      const [name] = readdirSync(dir);
      renameSync(join(dir, name!), join(dir, name!.replace(/^\d+/, String(pid))));
      expect(await replayJournals(store.db, dir)).toEqual({ answers: 1, inFlight: [{ pid, calls: 2 }] });
    });
  });
}
