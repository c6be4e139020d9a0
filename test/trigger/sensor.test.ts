import { idempotencyKeys } from "@trigger.dev/sdk";
import { resourceCatalog } from "@trigger.dev/core/v3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { targetColumns } from "../../src/core/target.ts";
import type { JsonSchema } from "../../src/core/types.ts";
import { configureTriggerRunner, defineSluiceTasks, type OrchestratorOutput } from "../../src/runners/trigger/index.ts";
import { senseNewRows, type FilesTick, type SensorTick } from "../../src/runners/trigger/sensors.ts";
import { loadSourceTable, saveSourceCursor, sourceCursor } from "../../src/store/sources.ts";
import { getRun } from "../../src/store/runs.ts";
import { createInProcessProvider, memoryDatabase, singleProvider, type TestDatabase } from "../../src/testing/index.ts";
import { dumpTarget } from "../../src/store/reports.ts";
import crm from "../../pipelines/crm-enrichment.ts";
import companySchema from "../../schemas/company.schema.json" with { type: "json" };
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { installTaskCatalog, startTriggerHarness, type TriggerHarness } from "./harness.ts";
import { classifyAndCommit, textColumns } from "../fixtures/classify-commit.ts";

/**
 * On Trigger.dev, a pipeline with `onNewRows` gets a scheduled sensor task:
 * each tick reads the rows past the cursor into a run in the shared store
 * and triggers the orchestrator keyed by the new cursor, so one cursor value
 * starts one run however often the tick is retried.
 */

installTaskCatalog();
const columns = textColumns;
const pipeline = classifyAndCommit("sensed", { key: "id", table: "sensed_src", cursor: "updated_at" }, { onNewRows: true });
const dropped = classifyAndCommit("dropped", { key: "id", glob: "drop/*.jsonl" }, { onNewFiles: true });
const TASKS = defineSluiceTasks([pipeline, crm, dropped]);
const row = (i: number, text = `invoice charged twice, case ${i}`) => ({ id: `s${i}`, text });
const tick = (at: string) => ({ type: "DECLARATIVE", scheduleId: "sched_sensor", timestamp: new Date(at), timezone: "UTC", upcoming: [] });

let db: TestDatabase;
let harness: TriggerHarness;
const provider = createInProcessProvider();

beforeAll(async () => {
  db = await memoryDatabase();
  harness = await startTriggerHarness();
  configureTriggerRunner({ db: db.db, providers: singleProvider(provider), chunkSize: 4 });
});
afterAll(async () => {
  await harness?.close();
  await db?.drop();
});

const orchestratorTriggers = (from: number, task = "sluice-sensed") =>
  harness.fake.requests.slice(from).filter((r) => r.path === `/api/v1/tasks/${task}/trigger`).map((r) => JSON.parse(r.body) as { payload: string; options: { idempotencyKey: string } });

describe("the onNewRows sensor on Trigger.dev", () => {
  test("is a scheduled task, and starts one run per new cursor value", async () => {
    expect(TASKS.get("sensed")!.plan.sensor).toEqual({ taskId: "sluice-sensed--sensor", cron: "* * * * *", watches: "rows" });
    expect(resourceCatalog.listTaskManifests().find((t) => t.id === "sluice-sensed--sensor")).toMatchObject({ triggerSource: "schedule", schedule: { cron: "* * * * *" } });

    await loadSourceTable(db.db, "sensed_src", "id", columns, Array.from({ length: 20 }, (_, i) => row(i)));
    let from = harness.fake.requests.length;
    const first = (await harness.runTask("sluice-sensed--sensor", tick("2025-03-03T02:00:00Z"), "run_sensor_1")) as SensorTick;
    expect(first.from).toBeNull();
    expect(first.started!.rows).toBe(20);
    const triggers = orchestratorTriggers(from);
    expect(triggers).toHaveLength(1);
    await harness.drain();
    const run = harness.fake.runs.get(first.started!.triggerRunId)!;
    expect(run.status).toBe("COMPLETED");
    expect((run.output as OrchestratorOutput).summary.items.byStatus).toEqual({ committed: 20 });

    // The tick's snapshot was the run's input; the run has loaded it and finished since.
    const snapshot = (await getRun(db.db, first.started!.runId))!.input_path!;
    expect(existsSync(snapshot)).toBe(true);
    // Keyed by the cursor value and the snapshot's content: a retried tick reads the same rows into the same file.
    expect(triggers[0]!.options.idempotencyKey).toBe(await idempotencyKeys.create(["sensed", "table:sensed_src", first.started!.to, basename(snapshot)], { scope: "global" }));

    // The next tick finds nothing past the cursor: no run; it deletes the finished run's snapshot.
    from = harness.fake.requests.length;
    const quiet = (await harness.runTask("sluice-sensed--sensor", tick("2025-03-03T02:01:00Z"), "run_sensor_2")) as SensorTick;
    expect(quiet).toEqual({ from: first.started!.to });
    expect(orchestratorTriggers(from)).toHaveLength(0);
    expect(existsSync(snapshot)).toBe(false);

    // Five new rows and two changed: one run of exactly those 7.
    await loadSourceTable(db.db, "sensed_src", "id", columns, [...Array.from({ length: 5 }, (_, i) => row(20 + i)), row(0, "the app crashes"), row(1, "export is broken")]);
    const second = (await harness.runTask("sluice-sensed--sensor", tick("2025-03-03T02:02:00Z"), "run_sensor_3")) as SensorTick;
    expect(second.from).toBe(first.started!.to);
    expect(second.started!.rows).toBe(7);
    await harness.drain();
    expect((harness.fake.runs.get(second.started!.triggerRunId)!.output as OrchestratorOutput).summary.items.total).toBe(7);
    expect(provider.calls).toBe(27);
  }, 180_000);

  test("a tick that died before moving the cursor continues the same run under the same key", async () => {
    await loadSourceTable(db.db, "sensed_src", "id", columns, Array.from({ length: 3 }, (_, i) => row(40 + i)));
    const before = await sourceCursor(db.db, "sensed", "table:sensed_src");
    const one = await senseNewRows(db.db, pipeline);
    // As if the tick had died after triggering: the cursor is back where it was.
    await saveSourceCursor(db.db, "sensed", "table:sensed_src", before!, "reset", 0);
    const two = await senseNewRows(db.db, pipeline);
    expect(two.started!.to).toBe(one.started!.to);
    expect(two.started!.runId).toBe(one.started!.runId);
    expect(two.started!.continued).toBe(true);
    expect(two.started!.triggerRunId).toBe(one.started!.triggerRunId);
    await harness.drain();
    expect((harness.fake.runs.get(one.started!.triggerRunId)!.output as OrchestratorOutput).summary.items.total).toBe(3);
  }, 180_000);
});

describe("the onNewFiles sensor on Trigger.dev", () => {
  let dir: string;
  afterAll(() => {
    delete process.env.SLUICE_GLOB_DIR;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("is a scheduled task, and starts one run per new file fingerprint, keyed by it", async () => {
    expect(TASKS.get("dropped")!.plan.sensor).toEqual({ taskId: "sluice-dropped--sensor", cron: "* * * * *", watches: "files" });
    expect(resourceCatalog.listTaskManifests().find((t) => t.id === "sluice-dropped--sensor")).toMatchObject({ triggerSource: "schedule", schedule: { cron: "* * * * *" } });
    dir = mkdtempSync(join(tmpdir(), "sluice-dropped-"));
    process.env.SLUICE_GLOB_DIR = dir;
    // Written a minute ago, as far as the sensor can tell: a file that changed in the last 2 s waits for the next tick.
    const settled = (path: string) => utimesSync(path, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const write = (name: string, rows: Record<string, unknown>[]) => {
      writeFileSync(join(dir, "drop", name), rows.map((r) => JSON.stringify(r)).join("\n"));
      settled(join(dir, "drop", name));
    };
    mkdirSync(join(dir, "drop"));
    write("a.jsonl", Array.from({ length: 3 }, (_, i) => row(100 + i)));
    write("b.jsonl", Array.from({ length: 2 }, (_, i) => row(110 + i)));
    writeFileSync(join(dir, "drop", "empty.jsonl"), "");
    settled(join(dir, "drop", "empty.jsonl"));
    writeFileSync(join(dir, "drop", "notes.txt"), "not matched");
    const calls = provider.calls;

    let from = harness.fake.requests.length;
    const first = (await harness.runTask("sluice-dropped--sensor", tick("2025-03-03T04:00:00Z"), "run_drop_sensor_1")) as FilesTick;
    expect(first.files.map((f) => f.path)).toEqual(["drop/a.jsonl", "drop/b.jsonl", "drop/empty.jsonl"]);
    const [a, b, empty] = first.files as [Extract<FilesTick["files"][number], { started: unknown }>, Extract<FilesTick["files"][number], { started: unknown }>, Extract<FilesTick["files"][number], { skipped: string }>];
    expect(empty.skipped).toMatch(/has no rows/);
    expect(a.started.rowsRead).toBe(3);
    expect(b.started.rowsRead).toBe(2);
    const keys = orchestratorTriggers(from, "sluice-dropped").map((t) => t.options.idempotencyKey);
    expect(keys).toEqual([
      await idempotencyKeys.create(["dropped", "file", "drop/a.jsonl", a.fingerprint], { scope: "global" }),
      await idempotencyKeys.create(["dropped", "file", "drop/b.jsonl", b.fingerprint], { scope: "global" }),
    ]);
    await harness.drain();
    for (const [f, n] of [[a, 3], [b, 2]] as const) {
      const run = harness.fake.runs.get(f.started.triggerRunId)!;
      expect(run.status).toBe("COMPLETED");
      expect((run.output as OrchestratorOutput).summary.items.byStatus).toEqual({ committed: n });
    }
    expect(provider.calls - calls).toBe(5);

    // Nothing new (the empty file is recorded with why): no run.
    from = harness.fake.requests.length;
    expect(await harness.runTask("sluice-dropped--sensor", tick("2025-03-03T04:01:00Z"), "run_drop_sensor_2")).toEqual({ files: [] });
    expect(orchestratorTriggers(from, "sluice-dropped")).toHaveLength(0);

    // b.jsonl gains a row, c.jsonl arrives: a run each; b's two unchanged rows are reused, so 2 calls in all.
    write("b.jsonl", [...Array.from({ length: 2 }, (_, i) => row(110 + i)), row(112)]);
    write("c.jsonl", [row(120)]);
    from = harness.fake.requests.length;
    const third = (await harness.runTask("sluice-dropped--sensor", tick("2025-03-03T04:02:00Z"), "run_drop_sensor_3")) as FilesTick;
    expect(third.files.map((f) => [f.path, "started" in f ? f.started.rowsRead : f.skipped])).toEqual([["drop/b.jsonl", 3], ["drop/c.jsonl", 1]]);
    expect(third.files[0]!.fingerprint).not.toBe(b.fingerprint);
    expect(orchestratorTriggers(from, "sluice-dropped")).toHaveLength(2);
    await harness.drain();
    expect(provider.calls - calls).toBe(7);
    const committed = (await dumpTarget(db.db, "dropped_out")).map((r) => JSON.parse(r) as { key: string; status: string });
    expect(committed.filter((r) => r.status === "active").map((r) => r.key).sort()).toEqual(["s100", "s101", "s102", "s110", "s111", "s112", "s120"]);
  }, 180_000);
});

describe("crm-enrichment on the Trigger.dev harness", () => {
  test("the sensor task picks up the loaded companies and the orchestrator enriches the ones that need it", async () => {
    const companies = readFileSync("examples/data/companies.jsonl", "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown> & { notes: string });
    await loadSourceTable(db.db, "crm_companies", "id", targetColumns(companySchema as JsonSchema, "id"), companies);
    const calls = provider.calls;
    const sensed = (await harness.runTask("sluice-crm-enrichment--sensor", tick("2025-03-03T03:00:00Z"), "run_crm_sensor_1")) as SensorTick;
    expect(sensed.started!.rows).toBe(companies.length);
    await harness.drain();
    const summary = (harness.fake.runs.get(sensed.started!.triggerRunId)!.output as OrchestratorOutput).summary;
    const needy = companies.filter((c) => /missing|unknown|outdated|stale|vague|new lead/i.test(c.notes)).length;
    expect(summary.status).toBe("finished");
    expect(summary.items.byStatus).toEqual({ committed: needy, gated_out: companies.length - needy });
    expect(provider.calls - calls).toBe(companies.length + needy);
    const rows = (await dumpTarget(db.db, "crm_enriched")).map((r) => JSON.parse(r) as { company_id: string; industry: string });
    expect(rows).toHaveLength(needy);
    expect(rows.find((r) => r.company_id === "C-1002")!.industry).toBe("fintech");
  }, 180_000);
});
