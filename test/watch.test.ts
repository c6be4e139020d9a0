import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { definePipeline, defineStage } from "../src/core/define.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { watchPipelines, watchedPipelines, type WatchEvent } from "../src/sensors/index.ts";
import { loadSourceTable } from "../src/store/sources.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import { singleProvider } from "../src/testing/harness.ts";
import { classifyAndCommit, textColumns } from "./fixtures/classify-commit.ts";

/**
 * `watch` starts a pipeline with `onNewRows` by itself, in the poll after
 * rows arrive past its cursor, and not again until the cursor moves. Polls
 * are counted through the watcher's `polled` events, not by the clock: a
 * slow machine makes each poll later, never the outcome different.
 */

const columns = textColumns;
const pipeline = classifyAndCommit("watched", { key: "id", table: "watched_src", cursor: "updated_at" }, { onNewRows: true });

const row = (i: number, text = `invoice charged twice, case ${i}`) => ({ id: `w${i}`, text });

/** Resolves when the events seen so far satisfy `until`; a generous cap in case they never do. */
function eventsUntil(events: WatchEvent[], until: (events: WatchEvent[]) => boolean, timeoutMs = 90_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      if (until(events)) return resolve();
      if (Date.now() - started > timeoutMs) return reject(new Error(`gave up waiting; events: ${JSON.stringify(events.map((e) => e.kind))}`));
      setTimeout(check, 20);
    };
    check();
  });
}

const count = (events: WatchEvent[], kind: WatchEvent["kind"]) => events.filter((e) => e.kind === kind).length;

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`watch with onNewRows, on ${driver.name}`, () => {
    let t: TestDatabase;
    let dir: string;
    afterEach(async () => {
      await t?.drop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("first reads N rows; after 50 inserted and 10 updated, starts one run of exactly those 60 in the next poll, and not again until the cursor moves", async () => {
      t = await driver.open();
      dir = mkdtempSync(join(tmpdir(), "sluice-watch-"));
      await loadSourceTable(t.db, "watched_src", "id", columns, Array.from({ length: 20 }, (_, i) => row(i)));
      const provider = createInProcessProvider();
      const events: WatchEvent[] = [];
      const stop = new AbortController();
      // A dollar per million tokens: enough for costs to tell which items were paid for.
      const priced = singleProvider(provider, (_model, usage) => (usage.inputTokens + usage.outputTokens) / 1e6);
      const watching = watchPipelines({ db: t.db, pipelines: [pipeline], providers: priced, pollMs: 100, signal: stop.signal, snapshotDir: dir, onEvent: (e) => events.push(e) });
      try {
        // The rows are there before watching starts: the first poll runs them.
        await eventsUntil(events, (e) => count(e, "finished") === 1);
        const first = events.find((e) => e.kind === "finished") as Extract<WatchEvent, { kind: "finished" }>;
        expect(first.result.read).toBe(20);
        expect(first.result.runs[0]!.items.byStatus.committed).toBe(20);
        const firstCost = first.result.runs[0]!.costUsd;
        expect(firstCost).toBeGreaterThan(0);
        expect(events.findIndex((e) => e.kind === "started")).toBeLessThan(events.findIndex((e) => e.kind === "polled"));

        // Three more polls with nothing new: no run.
        const polled = count(events, "polled");
        await eventsUntil(events, (e) => count(e, "polled") >= polled + 3);
        expect(count(events, "started")).toBe(1);
        expect(provider.calls).toBe(20);

        // 50 new rows, 10 changed and 5 loaded again unchanged: the next poll (at most one poll that began
        // before they landed) starts a run that queues exactly the 60 and pays for those 60 calls only.
        const reloaded = await loadSourceTable(t.db, "watched_src", "id", columns, [
          ...Array.from({ length: 50 }, (_, i) => row(20 + i)),
          ...Array.from({ length: 10 }, (_, i) => row(i, `the app crashes, case ${i}`)),
          ...Array.from({ length: 5 }, (_, i) => row(10 + i)),
        ]);
        expect(reloaded).toEqual({ inserted: 50, updated: 10 });
        const landed = count(events, "polled");
        await eventsUntil(events, (e) => count(e, "finished") === 2);
        const startedAt = events.findIndex((e, i) => e.kind === "started" && i > events.findIndex((x) => x === first));
        expect(events.slice(0, startedAt).filter((e) => e.kind === "polled").length - landed).toBeLessThanOrEqual(1);
        const second = events.filter((e) => e.kind === "finished")[1] as Extract<WatchEvent, { kind: "finished" }>;
        expect(second.result.read).toBe(60);
        const run = second.result.runs[0]!;
        expect(run.items.total).toBe(60);
        expect(run.items.byStatus).toEqual({ committed: 60 });
        const classify = run.stages.find((s) => s.id === "classify")!;
        expect(classify.processed).toBe(60);
        expect(classify.providerCalls).toBe(60);
        expect(provider.calls).toBe(80);
        // Paid for 60 items of about the first run's size: three times what its 20 cost, give or take their texts.
        expect(run.costUsd).toBeGreaterThan(firstCost * 2.4);
        expect(run.costUsd).toBeLessThan(firstCost * 3.6);

        const after = count(events, "polled");
        await eventsUntil(events, (e) => count(e, "polled") >= after + 3);
        expect(count(events, "started")).toBe(2);
        expect(count(events, "error")).toBe(0);
      } finally {
        stop.abort();
        await watching;
      }
    }, 180_000);
  });
}

// Reads what `watched` committed, past the target's committed_at: started by `after`, not by polling.
const digest = definePipeline({
  id: "digest",
  source: { key: "key", table: "watched_out", cursor: "committed_at" },
  after: "watched",
  stages: [
    defineStage({ id: "tally", kind: "map", codeVersion: "1", run: ({ item }) => ({ category: (item.data as { category: string }).category }) }),
    defineStage({ id: "commit", kind: "commit", target: { table: "digest_out", key: "id" }, row: ({ itemId, outputs }) => ({ id: itemId, ...(outputs.tally as { category: string }) }) }),
  ],
});

const inbox = classifyAndCommit("inbox", { key: "id", glob: "in/*.jsonl" }, { onNewFiles: true });

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`watch with after and onNewFiles, on ${driver.name}`, () => {
    let t: TestDatabase;
    let dir: string;
    afterEach(async () => {
      await t?.drop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("starts a pipeline after the one it follows commits, and a glob pipeline once per new file", async () => {
      t = await driver.open();
      dir = mkdtempSync(join(tmpdir(), "sluice-watch-"));
      await loadSourceTable(t.db, "watched_src", "id", columns, Array.from({ length: 10 }, (_, i) => row(i)));
      const events: WatchEvent[] = [];
      const stop = new AbortController();
      const finished = (id: string) => events.filter((e): e is Extract<WatchEvent, { kind: "finished" }> => e.kind === "finished" && e.pipeline === id);
      const started = (id: string) => events.filter((e): e is Extract<WatchEvent, { kind: "started" }> => e.kind === "started" && e.pipeline === id);
      const watching = watchPipelines({ db: t.db, pipelines: [pipeline, digest, inbox], providers: singleProvider(createInProcessProvider()), pollMs: 100, signal: stop.signal, snapshotDir: join(dir, "snap"), cwd: dir, onEvent: (e) => events.push(e) });
      try {
        await eventsUntil(events, () => finished("digest").length === 1);
        expect(started("digest")[0]!.because).toBe("after watched committed rows");
        expect(finished("digest")[0]!.result.read).toBe(10);
        expect(finished("digest")[0]!.result.runs[0]!.items.byStatus).toEqual({ committed: 10 });
        expect(started("inbox")).toEqual([]);

        mkdirSync(join(dir, "in"));
        writeFileSync(join(dir, "in", "a.jsonl"), [row(100), row(101)].map((r) => JSON.stringify(r)).join("\n"));
        // Still for a minute, as far as the sensor can tell: a file that changed in the last 2 s waits.
        utimesSync(join(dir, "in", "a.jsonl"), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
        await eventsUntil(events, () => finished("inbox").length === 1);
        expect(started("inbox")[0]!.because).toBe("1 new file(s) matching in/*.jsonl: in/a.jsonl");
        expect(finished("inbox")[0]!.result.runs[0]!.items.total).toBe(2);
        expect(finished("inbox")[0]!.result.files).toEqual([{ file: "in/a.jsonl", runId: finished("inbox")[0]!.result.runs[0]!.runId }]);
        const polled = count(events, "polled");
        await eventsUntil(events, (e) => count(e, "polled") >= polled + 3);
        expect(started("inbox")).toHaveLength(1);
        expect(started("digest")).toHaveLength(1);
        expect(started("watched")).toHaveLength(1);
        expect(count(events, "error")).toBe(0);
      } finally {
        stop.abort();
        await watching;
      }
    }, 180_000);
  });
}

describe("watch with a schedule", () => {
  it("starts a scheduled pipeline on each tick; a tick with nothing new runs nothing", async () => {
    const t = await testDrivers()[0]!.open();
    const dir = mkdtempSync(join(tmpdir(), "sluice-watch-"));
    // Every second (croner's six-field form), so the test sees two ticks.
    const nightly = definePipeline({ ...pipeline, id: "ticking", onNewRows: undefined, schedule: { cron: "* * * * * *", timezone: "UTC" } });
    await loadSourceTable(t.db, "watched_src", "id", columns, Array.from({ length: 4 }, (_, i) => row(i)));
    const events: WatchEvent[] = [];
    const stop = new AbortController();
    const watching = watchPipelines({ db: t.db, pipelines: [nightly], providers: singleProvider(createInProcessProvider()), pollMs: 100, signal: stop.signal, snapshotDir: dir, onEvent: (e) => events.push(e) });
    try {
      await eventsUntil(events, (e) => count(e, "finished") >= 2);
      const starts = events.filter((e): e is Extract<WatchEvent, { kind: "started" }> => e.kind === "started");
      expect(starts.every((e) => /^schedule "\* \* \* \* \* \*" \(due /.test(e.because))).toBe(true);
      const [first, second] = events.filter((e): e is Extract<WatchEvent, { kind: "finished" }> => e.kind === "finished");
      expect(first!.result.read).toBe(4);
      expect(second!.result).toMatchObject({ read: 0, runs: [] });
    } finally {
      stop.abort();
      await watching;
      await t.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});

describe("what watch takes on", () => {
  it("skips pipelines without sensors and refuses a sensor it cannot serve", () => {
    const plain = definePipeline({ ...pipeline, id: "plain", onNewRows: undefined });
    expect(watchedPipelines([pipeline, plain]).map((p) => p.id)).toEqual(["watched"]);
    const fileScheduled = definePipeline({ ...plain, id: "nightly", source: { key: "id" }, schedule: { cron: "0 3 * * *" } });
    expect(() => watchedPipelines([fileScheduled])).toThrow(/reads a file given with --input/);
    expect(() => watchedPipelines([definePipeline({ ...plain, id: "down", after: "missing" })])).toThrow(/not among the pipelines watched/);
    expect(() => watchedPipelines([definePipeline({ ...plain, id: "bad-cron", schedule: { cron: "every day" } })])).toThrow();
  });
});
