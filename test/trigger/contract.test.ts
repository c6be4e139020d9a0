import { idempotencyKeys } from "@trigger.dev/sdk";
import { parsePacket, resourceCatalog } from "@trigger.dev/core/v3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createOrContinueRun, ensureLoaded, openRun, planStages, prepareStage } from "../../src/engine/index.ts";
import { chunkRanges, configureTriggerRunner, defineSluiceTasks, dispatchRound, submitFromEnv, submitRun, type OrchestratorOutput } from "../../src/runners/trigger/index.ts";
import { createInProcessProvider, freshPostgres, memoryDatabase, singleProvider, type TestDatabase } from "../../src/testing/index.ts";
import { miniItems, miniVariant, tempDir } from "./data.ts";
import type { RecordedRequest } from "./fake-api.ts";
import { installTaskCatalog, startTriggerHarness, type TriggerHarness } from "./harness.ts";

/**
 * Depth 2: the real SDK talks HTTP to a loopback fake of the Trigger.dev API,
 * which records what it receives. These tests read the wire: batch sizes,
 * idempotency keys, payloads (references, never item rows), and what a
 * deploy would register for a schedule.
 */

installTaskCatalog();
const contract = miniVariant("contract");
const fanout = miniVariant("fanout");
const nightly = miniVariant("nightly", { schedule: { cron: "0 3 * * 1-5", timezone: "Europe/Berlin" } });
const up = miniVariant("wire-up");
const down = miniVariant("wire-down", { after: "mini-wire-up" });
const TASKS = defineSluiceTasks([contract, fanout, nightly, up, down]);
const REFERENCE_FIELDS = ["chunk", "first", "last", "pipelineId", "round", "runId", "stageId", "stageIndex"];

interface BatchItemLine {
  index: number;
  task: string;
  payload: string;
  options: { payloadType: string; idempotencyKey?: string; idempotencyKeyOptions?: { key: unknown; scope: string }; tags?: string[] };
}

const itemLines = (requests: RecordedRequest[]) =>
  requests.filter((r) => /^\/api\/v3\/batches\/[^/]+\/items$/.test(r.path)).map((r) => r.body.trim().split("\n").map((l) => JSON.parse(l) as BatchItemLine));
const createBodies = (requests: RecordedRequest[]) => requests.filter((r) => r.method === "POST" && r.path === "/api/v3/batches").map((r) => JSON.parse(r.body));
const decode = async (line: BatchItemLine) => (await parsePacket({ data: line.payload, dataType: line.options.payloadType })) as Record<string, unknown>;

let db: TestDatabase;
let harness: TriggerHarness;
const dir = tempDir();

beforeAll(async () => {
  db = await memoryDatabase();
  harness = await startTriggerHarness();
  configureTriggerRunner({ db: db.db, providers: singleProvider(createInProcessProvider()), chunkSize: 4 });
});
afterAll(async () => {
  await harness?.close();
  await db?.drop();
  dir.remove();
});

describe("what the SDK sends to Trigger.dev", () => {
  test("every stage goes out as batches of range references, keyed by run, stage, chunk and orchestrator run", async () => {
    const lines = miniItems("contract", 25);
    const input = dir.file("contract.jsonl", lines);
    const from = harness.fake.requests.length;
    const submitted = await submitRun({ db: db.db, pipeline: contract, inputPath: input, allowEmbedded: true });
    await harness.drain();
    const orchestrator = harness.fake.runs.get(submitted.triggerRunId)!;
    expect(orchestrator.status).toBe("COMPLETED");
    const requests = harness.fake.requests.slice(from);

    const trigger = requests.find((r) => r.path === "/api/v1/tasks/sluice-mini-contract/trigger")!;
    const triggerBody = JSON.parse(trigger.body);
    expect(await parsePacket({ data: triggerBody.payload, dataType: triggerBody.options.payloadType })).toEqual({ runId: submitted.runId });
    expect(triggerBody.options.idempotencyKey).toBe(await idempotencyKeys.create([submitted.runId, "orchestrate"], { scope: "global" }));
    expect(trigger.headers.authorization).toBe("Bearer tr_dev_sluice_test");

    const creates = createBodies(requests);
    const streams = itemLines(requests);
    const output = orchestrator.output as OrchestratorOutput;
    expect(creates.map((c) => c.runCount)).toEqual(output.stages.flatMap((s) => s.rounds.flatMap((r) => r.batches)));
    expect(creates.every((c) => c.parentRunId === orchestrator.id && c.resumeParentOnCompletion === true)).toBe(true);
    expect(streams.map((s) => s.length)).toEqual(creates.map((c) => c.runCount));
    expect(streams[0]).toHaveLength(Math.ceil(25 / 4)); // filter sees every item, 4 per run

    for (const stream of streams) {
      const payloads = await Promise.all(stream.map(decode));
      const stageIndex = payloads[0]!.stageIndex as number;
      expect(stream.every((l) => l.task === `sluice-mini-contract--${contract.stages[stageIndex]!.id}`)).toBe(true);
      for (const [i, line] of stream.entries()) {
        const p = payloads[i]!;
        expect(Object.keys(p).sort()).toEqual(REFERENCE_FIELDS);
        expect(p).toMatchObject({ runId: submitted.runId, pipelineId: "mini-contract", round: 0, chunk: i });
        // Keyed by the orchestrator's run too: its retried attempts share the keys, a new orchestrator run has its own.
        const parts = [submitted.runId, p.stageId as string, String(i), `by-${orchestrator.id}`];
        expect(line.options.idempotencyKey).toBe(await idempotencyKeys.create(parts, { scope: "global" }));
        expect(line.options.idempotencyKeyOptions).toEqual({ key: parts.join("-"), scope: "global" });
        expect(line.options.tags).toEqual([`sluice:${submitted.runId}`, "pipeline:mini-contract", `stage:${p.stageId}`]);
        // Ranges follow each other without overlap.
        if (i > 0) expect(String(p.first) > String(payloads[i - 1]!.last)).toBe(true);
      }
    }
    // No payload carries an item: none of the texts appears anywhere on the wire after the input was loaded.
    const wire = requests.map((r) => r.body).join("\n");
    for (const line of lines) {
      const text = (JSON.parse(line) as { text: string }).text;
      if (text) expect(wire).not.toContain(text);
    }
  });

  test("10,000 items fan out in batches of at most 1,000 runs, every payload far under 10 KB", async () => {
    const input = dir.file("fanout.jsonl", miniItems("fanout", 10_000));
    const { run } = await createOrContinueRun(db.db, fanout, planStages(fanout), input, { fresh: true });
    const { ctx } = await openRun({ db: db.db, pipeline: fanout, providers: singleProvider(createInProcessProvider()), runId: run.id });
    await ensureLoaded(ctx, run);
    expect(await prepareStage(ctx, 0)).toHaveLength(10_000);
    const ranges = await chunkRanges(ctx, 0, 1, false); // one item per run: 10,000 runs
    const from = harness.fake.requests.length;
    harness.fake.hold = true; // record only: nothing executes
    try {
      const report = await harness.inTaskContext(() => dispatchRound(ctx, ctx.plan[0]!, 0, ranges, 1000, TASKS.get("mini-fanout")!.deps, "run_fanout_orchestrator"), "run_fanout_orchestrator");
      expect(report.batches).toEqual(Array(10).fill(1000));
    } finally {
      harness.fake.hold = false;
    }
    const requests = harness.fake.requests.slice(from);
    const creates = createBodies(requests);
    const streams = itemLines(requests);
    const payloadBytes = streams.flat().map((l) => Buffer.byteLength(l.payload));
    const lineBytes = streams.flat().map((l) => Buffer.byteLength(JSON.stringify(l)));
    const figures = { batches: creates.length, runsPerBatch: [...new Set(creates.map((c) => c.runCount))], maxPayloadBytes: Math.max(...payloadBytes), maxItemLineBytes: Math.max(...lineBytes) };
    console.info(`fan-out of 10,000 items: ${JSON.stringify(figures)}`);
    expect(creates.length).toBeGreaterThanOrEqual(10);
    expect(creates.every((c) => c.runCount <= 1000)).toBe(true);
    expect(streams.every((s) => s.length <= 1000)).toBe(true);
    expect(streams.flat()).toHaveLength(10_000);
    expect(figures.maxPayloadBytes).toBeLessThan(10 * 1024);
    expect(streams.flat().every((l) => l.options.payloadType === "application/super+json")).toBe(true); // inline, not offloaded
    expect(harness.fake.packets.size).toBe(0);
    expect(new Set(streams.flat().map((l) => l.options.idempotencyKey)).size).toBe(10_000);
  });

  test("a schedule is registered from the task manifest and each tick starts one run", async () => {
    const manifest = resourceCatalog.listTaskManifests().find((t) => t.id === "sluice-mini-nightly--schedule");
    expect(manifest).toMatchObject({ triggerSource: "schedule", schedule: { cron: "0 3 * * 1-5", timezone: "Europe/Berlin" } });
    configureTriggerRunner({ db: db.db, providers: singleProvider(createInProcessProvider()), chunkSize: 4, inputs: { "mini-nightly": dir.file("nightly.jsonl", miniItems("nightly", 12)) } });
    const tick = { type: "DECLARATIVE", scheduleId: "sched_1", timestamp: new Date("2025-03-03T02:00:00Z"), timezone: "Europe/Berlin", upcoming: [] };
    const from = harness.fake.requests.length;
    const first = await harness.runTask("sluice-mini-nightly--schedule", tick, "run_tick_1");
    const again = await harness.runTask("sluice-mini-nightly--schedule", tick, "run_tick_1", 2); // a retried tick
    expect(again.orchestratorRunId).toBe(first.orchestratorRunId);
    const triggers = harness.fake.requests.slice(from).filter((r) => r.path === "/api/v1/tasks/sluice-mini-nightly/trigger").map((r) => JSON.parse(r.body));
    expect(triggers).toHaveLength(2);
    expect(triggers[0].options.idempotencyKey).toBe(await idempotencyKeys.create(["mini-nightly", "schedule", "2025-03-03T02:00:00.000Z"], { scope: "global" }));
    await harness.drain();
    const run = harness.fake.runs.get(first.orchestratorRunId)!;
    expect(run.status).toBe("COMPLETED");
    const output = run.output as OrchestratorOutput;
    expect(output.summary.items.total).toBe(12);
    // The orchestrator attempt that created the sluice run finds it again when retried.
    const retried = (await harness.runTask("sluice-mini-nightly", { scheduledAt: "2025-03-03T02:00:00.000Z" }, run.id, 2)) as OrchestratorOutput;
    expect(retried.summary.runId).toBe(output.summary.runId);
    configureTriggerRunner({ db: db.db, providers: singleProvider(createInProcessProvider()), chunkSize: 4 });
  });

  test("a downstream pipeline is triggered with the upstream run id as its idempotency key", async () => {
    const from = harness.fake.requests.length;
    const submitted = await submitRun({ db: db.db, pipeline: up, inputPath: dir.file("up.jsonl", miniItems("wire-up", 8)), allowEmbedded: true });
    await harness.drain();
    const trigger = harness.fake.requests.slice(from).find((r) => r.path === "/api/v1/tasks/sluice-mini-wire-down/trigger")!;
    const body = JSON.parse(trigger.body);
    expect(body.options.idempotencyKey).toBe(await idempotencyKeys.create([submitted.runId], { scope: "global" }));
    expect(body.options.idempotencyKeyOptions).toEqual({ key: submitted.runId, scope: "global" });
    expect(await parsePacket({ data: body.payload, dataType: body.options.payloadType })).toMatchObject({ upstream: { pipeline: "mini-wire-up", runId: submitted.runId } });
  });

  test("submitting from the environment names what is missing", async () => {
    const input = dir.file("env.jsonl", miniItems("env", 3));
    await expect(submitFromEnv(contract, input, { env: { TRIGGER_SECRET_KEY: "tr_dev_x" } })).rejects.toThrow(/needs DATABASE_URL/);
    await expect(submitFromEnv(contract, input, { env: { DATABASE_URL: "postgres://127.0.0.1:1/x" } })).rejects.toThrow(/set TRIGGER_SECRET_KEY/);
  });

  // Last: submitFromEnv configures the SDK from the environment it is given.
  test.skipIf(!process.env.DATABASE_URL)("submitting from the environment loads the input into Postgres and triggers with the secret key", async () => {
    const pg = await freshPostgres(process.env.DATABASE_URL!);
    const from = harness.fake.requests.length;
    harness.fake.hold = true; // the orchestrator's store here is PGlite: record only
    try {
      const submitted = await submitFromEnv(contract, dir.file("env-pg.jsonl", miniItems("env-pg", 5)), {
        env: { DATABASE_URL: pg.url, TRIGGER_SECRET_KEY: "tr_dev_from_env", TRIGGER_API_URL: harness.fake.url },
      });
      expect(submitted.rowsRead).toBe(5);
      const trigger = harness.fake.requests.slice(from).find((r) => r.path === "/api/v1/tasks/sluice-mini-contract/trigger")!;
      expect(trigger.headers.authorization).toBe("Bearer tr_dev_from_env");
    } finally {
      harness.fake.hold = false;
      await pg.drop();
    }
  });
});
