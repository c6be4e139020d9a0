import { afterAll, beforeAll, expect, test } from "vitest";
import { definePipeline } from "../../src/core/define.ts";
import { isLlmStage } from "../../src/core/types.ts";
import { costOf, createProvider } from "../../src/providers/index.ts";
import { batchLimitName, configureTriggerRunner, defineSluiceTasks, providerLimitName, submitRun, type ChunkOutput, type OrchestratorOutput } from "../../src/runners/trigger/index.ts";
import { startSimulator, type Simulator } from "../../src/sim/index.ts";
import { requireRun } from "../../src/store/runs.ts";
import { memoryDatabase, type TestDatabase } from "../../src/testing/index.ts";
import { miniItems, miniVariant, tempDir } from "./data.ts";
import { installTaskCatalog, recordSdkLogs, startTriggerHarness, type TriggerHarness } from "./harness.ts";

/**
 * A stage in provider batch mode on the Trigger.dev path: the chunk run
 * submits one provider batch (through the OpenAI SDK to the simulator), then
 * waits with `wait.for` between polls: the fake suspends it (no slot held)
 * and resumes it as a fresh invocation, which finds the batch in the store
 * and collects it. When that run's worker goes away mid-wait, the retried
 * attempt collects the batch; nothing is submitted, or paid for, twice.
 */

installTaskCatalog();
const base = miniVariant("batch");
const pipeline = definePipeline({ ...base, stages: base.stages.map((s) => (isLlmStage(s) ? { ...s, provider: "openai" as const, mode: "batch" as const } : s)) });
const TASKS = defineSluiceTasks([pipeline]);

let sim: Simulator;
let db: TestDatabase;
let harness: TriggerHarness;
const dir = tempDir();

beforeAll(async () => {
  [sim, db] = await Promise.all([startSimulator({ port: 0 }), memoryDatabase()]);
  harness = await startTriggerHarness();
  const openai = createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, env: {} });
  configureTriggerRunner({
    db: db.db,
    providers: { defaultProvider: "openai", get: () => openai, cost: costOf },
    chunkSize: 5,
    engine: { batchPollMs: 10, batchPollMaxMs: 20, leaseMs: 500 },
  });
});
afterAll(async () => {
  await harness?.close();
  await Promise.all([sim?.close(), db?.drop()]);
  dir.remove();
});

async function run(tag: string) {
  const submitted = await submitRun({ db: db.db, pipeline, inputPath: dir.file(`${tag}.jsonl`, miniItems(tag, 30)), allowEmbedded: true });
  await harness.drain();
  const orchestrator = harness.fake.runs.get(submitted.triggerRunId)!;
  expect(orchestrator.status).toBe("COMPLETED");
  return orchestrator.output as OrchestratorOutput;
}

test("a batch-mode stage is one chunk run that submits one provider batch, and the engine's log of it reaches the SDK logger", async () => {
  sim.reset();
  const logs = recordSdkLogs();
  const out = await run("batch-plain").finally(() => logs.stop());
  // A line the engine itself writes (batch.ts), through the logger a worker gets by default.
  expect(logs.lines.some((l) => l.level === "info" && /^stage classify: submitted openai batch \S+ \(\d+ requests\)$/.test(l.message))).toBe(true);
  const classify = out.summary.stages.find((s) => s.id === "classify")!;
  expect(out.stages.find((s) => s.stageId === "classify")!.rounds).toEqual([{ round: 0, chunks: 1, batches: [1], failedRuns: 0 }]);
  expect(sim.stats().batches.created).toBe(1);
  expect(sim.stats().realtimeCalls).toBe(0);
  expect(classify.providerCalls).toBe(sim.stats().batchCalls);
  expect(out.summary.items.byStatus.committed).toBeGreaterThan(0);
});

test("a chunk run that cannot be restored after a wait is retried, and the retry collects its batch, not resubmits it", async () => {
  sim.reset();
  sim.configure({ batch: { pollsToComplete: 8 } });
  // The first attempt submits, waits, and its checkpoint is lost: the attempt fails while its provider batch is in flight.
  harness.faults.failResume = (r) => r.taskId === "sluice-mini-batch--classify" && r.attempts === 1;
  try {
    const out = await run("batch-stopped");
    expect(sim.stats().batches.created).toBe(1);
    const classifyRun = [...harness.fake.runs.values()].filter((r) => r.taskId === "sluice-mini-batch--classify").at(-1)!;
    expect(classifyRun.attempts).toBe(2);
    // The second attempt took the first one's batch over and wrote its answers.
    expect(classifyRun.output as ChunkOutput).toMatchObject({ resumedBatches: 1 });
    expect((classifyRun.output as ChunkOutput).executed).toBeGreaterThan(0);
    const classify = out.summary.stages.find((s) => s.id === "classify")!;
    expect(classify.providerCalls).toBe(sim.stats().batchCalls);
    expect(out.summary.items.byStatus.committed).toBeGreaterThan(0);
  } finally {
    harness.faults.failResume = undefined;
    sim.configure({ batch: { pollsToComplete: 0 } });
  }
});

test("a batch-mode chunk run is suspended while its provider batch is in flight, holding no slot, and a fresh invocation collects it", async () => {
  sim.reset();
  // The batch completes on its third poll: the run must wait at least twice.
  sim.configure({ batch: { pollsToComplete: 3 } });
  const seen: { status: string; realtime: string[]; batch: string[]; created: number; completed: number }[] = [];
  harness.faults.onSuspend = (run) => {
    if (run.taskId !== "sluice-mini-batch--classify") return;
    const stats = sim.stats().batches;
    seen.push({ status: run.status, realtime: harness.fake.held(providerLimitName("openai")), batch: harness.fake.held(batchLimitName("openai")), created: stats.created, completed: stats.completed });
  };
  const executionsBefore = harness.executions.length;
  try {
    const out = await run("batch-suspended");
    const classifyRun = [...harness.fake.runs.values()].filter((r) => r.taskId === "sluice-mini-batch--classify").at(-1)!;
    // The batch stage holds the provider's batch limit, not its realtime one.
    expect(TASKS.get(pipeline.id)!.plan.stages.find((st) => st.stageId === "classify")!.concurrency).toMatchObject({ limit: batchLimitName("openai") });
    expect(harness.fake.peakHeld(batchLimitName("openai"))).toBeGreaterThanOrEqual(1);
    expect(harness.fake.peakHeld(providerLimitName("openai"))).toBe(0);
    // Suspended (checkpointed) while the provider batch was in flight, holding no slot of either limit.
    expect(classifyRun.suspensions).toBeGreaterThanOrEqual(2);
    expect(seen.length).toBe(classifyRun.suspensions);
    for (const s of seen) expect(s).toEqual({ status: "WAITING", realtime: [], batch: [], created: 1, completed: 0 });
    // Each wait was a wait.for long enough to be checkpointed (the SDK bills waits of 5 s or less).
    expect(classifyRun.waits.length).toBe(classifyRun.suspensions);
    // Resumed as fresh invocations of the same attempt; the last one collected the batch it found in the store.
    const invocations = harness.executions.slice(executionsBefore).filter((e) => e.runId === classifyRun.id);
    expect(invocations.map((e) => e.attempt)).toEqual(Array(classifyRun.suspensions + 1).fill(1));
    expect(classifyRun.attempts).toBe(1);
    expect(classifyRun.output as ChunkOutput).toMatchObject({ executed: expect.any(Number) });
    expect((classifyRun.output as ChunkOutput).executed).toBeGreaterThan(0);
    // One batch, submitted once, and every request in it paid once.
    expect(sim.stats().batches).toMatchObject({ created: 1, completed: 1 });
    const classify = out.summary.stages.find((st) => st.id === "classify")!;
    expect(classify.providerCalls).toBe(sim.stats().batchCalls);
    expect(sim.stats().realtimeCalls).toBe(0);
    expect(out.summary.status).toBe("finished");
    expect(out.summary.items.byStatus.committed).toBeGreaterThan(0);
  } finally {
    harness.faults.onSuspend = undefined;
    sim.configure({ batch: { pollsToComplete: 0 } });
  }
});

test("a run submitted with a deadline records it, and every task run of it works to it", async () => {
  sim.reset();
  const submitted = await submitRun({ db: db.db, pipeline, inputPath: dir.file("batch-deadline.jsonl", miniItems("batch-deadline", 10)), allowEmbedded: true, deadline: "6h" });
  const row = await requireRun(db.db, submitted.runId);
  const deadlineAt = row.options.deadlineAt as string;
  expect(Date.parse(deadlineAt) - Date.parse(row.created_at)).toBe(6 * 3_600_000);
  await harness.drain();
  const out = harness.fake.runs.get(submitted.triggerRunId)!.output as OrchestratorOutput;
  // The orchestrator and its chunk runs opened the run without being told: the deadline came from the store.
  expect(out.summary.deadlineAt).toBe(deadlineAt);
  expect(out.summary.status).toBe("finished");
});
