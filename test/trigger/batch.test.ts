import { afterAll, beforeAll, expect, test } from "vitest";
import { definePipeline } from "../../src/core/define.ts";
import { isLlmStage } from "../../src/core/types.ts";
import { costOf, createProvider } from "../../src/providers/index.ts";
import { configureTriggerRunner, defineSluiceTasks, submitRun, type ChunkOutput, type OrchestratorOutput } from "../../src/runners/trigger/index.ts";
import { startSimulator, type Simulator } from "../../src/sim/index.ts";
import { memoryDatabase, type TestDatabase } from "../../src/testing/index.ts";
import { miniItems, miniVariant, tempDir } from "./data.ts";
import { installTaskCatalog, recordSdkLogs, startTriggerHarness, type TriggerHarness } from "./harness.ts";

/**
 * A stage in provider batch mode on the Trigger.dev path: the chunk run
 * submits one provider batch (through the OpenAI SDK to the simulator) and
 * the engine polls it. When that run's worker goes away mid-poll, the retried
 * attempt collects the batch; nothing is submitted, or paid for, twice.
 */

installTaskCatalog();
const base = miniVariant("batch");
const pipeline = definePipeline({ ...base, stages: base.stages.map((s) => (isLlmStage(s) ? { ...s, provider: "openai" as const, mode: "batch" as const } : s)) });
defineSluiceTasks([pipeline]);

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

test("a chunk run stopped while its provider batch is in flight is retried and collects it, not resubmits it", async () => {
  sim.reset();
  sim.configure({ batch: { pollsToComplete: 8 } });
  harness.faults.signal = (e) => {
    if (e.taskId !== "sluice-mini-batch--classify" || e.attempt !== 1) return undefined;
    const controller = new AbortController();
    const watch = setInterval(() => {
      if (sim.stats().batches.created < 1) return;
      clearInterval(watch);
      controller.abort(new Error("worker shut down"));
    }, 2);
    return controller.signal;
  };
  try {
    const out = await run("batch-stopped");
    expect(sim.stats().batches.created).toBe(1);
    const classifyRun = [...harness.fake.runs.values()].filter((r) => r.taskId === "sluice-mini-batch--classify").at(-1)!;
    expect(classifyRun.attempts).toBe(2);
    expect(classifyRun.output as ChunkOutput).toMatchObject({ resumedBatches: 1, executed: 0 });
    const classify = out.summary.stages.find((s) => s.id === "classify")!;
    expect(classify.providerCalls).toBe(sim.stats().batchCalls);
    expect(out.summary.items.byStatus.committed).toBeGreaterThan(0);
  } finally {
    harness.faults.signal = undefined;
    sim.configure({ batch: { pollsToComplete: 0 } });
  }
});
