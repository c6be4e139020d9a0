import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { definePipeline, defineStage } from "../src/core/define.ts";
import { targetColumns } from "../src/core/target.ts";
import type { JsonSchema } from "../src/core/types.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { watchPipelines, watchedPipelines, type WatchEvent } from "../src/sensors/index.ts";
import { loadSourceTable } from "../src/store/sources.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import { singleProvider } from "../src/testing/harness.ts";

/**
 * `watch` starts a pipeline with `onNewRows` by itself, in the poll after
 * rows arrive past its cursor, and not again until the cursor moves. Polls
 * are counted through the watcher's `polled` events, not by the clock: a
 * slow machine makes each poll later, never the outcome different.
 */

const columns = targetColumns({ type: "object", properties: { id: { type: "string" }, text: { type: "string" } } }, "id");
const labelSchema: JsonSchema = {
  type: "object",
  additionalProperties: false,
  required: ["category", "confidence"],
  properties: { category: { enum: ["billing", "bug", "other"] }, confidence: { type: "number" } },
};

const pipeline = definePipeline({
  id: "watched",
  source: { key: "id", table: "watched_src", cursor: "updated_at" },
  onNewRows: true,
  stages: [
    defineStage({ id: "classify", kind: "classify", model: "gpt-4o-mini", prompt: { user: "{{item.text}}" }, output: { name: "Label", schema: labelSchema } }),
    defineStage({ id: "commit", kind: "commit", target: { table: "watched_out", key: "id" }, row: ({ itemId, outputs }) => ({ id: itemId, category: outputs.classify.category }) }),
  ],
});

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

    it("runs once per move of the cursor, in the poll after the rows arrive", async () => {
      t = await driver.open();
      dir = mkdtempSync(join(tmpdir(), "sluice-watch-"));
      await loadSourceTable(t.db, "watched_src", "id", columns, Array.from({ length: 20 }, (_, i) => row(i)));
      const provider = createInProcessProvider();
      const events: WatchEvent[] = [];
      const stop = new AbortController();
      const watching = watchPipelines({ db: t.db, pipelines: [pipeline], providers: singleProvider(provider), pollMs: 100, signal: stop.signal, snapshotDir: dir, onEvent: (e) => events.push(e) });
      try {
        // The rows are there before watching starts: the first poll runs them.
        await eventsUntil(events, (e) => count(e, "finished") === 1);
        const first = events.find((e) => e.kind === "finished") as Extract<WatchEvent, { kind: "finished" }>;
        expect(first.result.read).toBe(20);
        expect(first.result.runs[0]!.items.byStatus.committed).toBe(20);
        expect(events.findIndex((e) => e.kind === "started")).toBeLessThan(events.findIndex((e) => e.kind === "polled"));

        // Three more polls with nothing new: no run.
        const polled = count(events, "polled");
        await eventsUntil(events, (e) => count(e, "polled") >= polled + 3);
        expect(count(events, "started")).toBe(1);
        expect(provider.calls).toBe(20);

        // Five new rows and two changed: the next poll (at most one poll that began before they landed) runs exactly those.
        await loadSourceTable(t.db, "watched_src", "id", columns, [...Array.from({ length: 5 }, (_, i) => row(20 + i)), row(0, "the app crashes"), row(1, "the app crashes too")]);
        const landed = count(events, "polled");
        await eventsUntil(events, (e) => count(e, "finished") === 2);
        const startedAt = events.findIndex((e, i) => e.kind === "started" && i > events.findIndex((x) => x === first));
        expect(events.slice(0, startedAt).filter((e) => e.kind === "polled").length - landed).toBeLessThanOrEqual(1);
        const second = events.filter((e) => e.kind === "finished")[1] as Extract<WatchEvent, { kind: "finished" }>;
        expect(second.result.read).toBe(7);
        expect(second.result.runs[0]!.items.total).toBe(7);
        expect(provider.calls).toBe(27);

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
