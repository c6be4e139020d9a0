import { tasks } from "@trigger.dev/sdk";
import { afterAll, beforeAll, expect, test } from "vitest";
import { configureTriggerRunner, defineSluiceTasks, submitRun, type OrchestratorOutput, type StageProgress } from "../../src/runners/trigger/index.ts";
import { createInProcessProvider, memoryDatabase, singleProvider, type TestDatabase } from "../../src/testing/index.ts";
import { miniItems, miniVariant, tempDir } from "./data.ts";
import { installTaskCatalog, recordSdkLogs, startTriggerHarness, type TriggerHarness } from "./harness.ts";

/**
 * What a run shows in the Trigger.dev dashboard: the engine's log lines reach
 * the SDK's logger on the worker (not the engine's silent default), the
 * orchestrator's run metadata holds each stage's counts and cost, and every
 * task run is tagged with its sluice run and pipeline.
 */

installTaskCatalog();
const pipeline = miniVariant("observe");
defineSluiceTasks([pipeline]);

let db: TestDatabase;
let harness: TriggerHarness;
const dir = tempDir();

beforeAll(async () => {
  db = await memoryDatabase();
  harness = await startTriggerHarness();
  // No logger here: a worker gets none either, and must fall back to the SDK's.
  configureTriggerRunner({ db: db.db, providers: singleProvider(createInProcessProvider()), chunkSize: 6 });
});
afterAll(async () => {
  await harness?.close();
  await db?.drop();
  dir.remove();
});

test("engine logs reach the SDK logger, progress per stage is in run metadata, and runs are tagged", async () => {
  const logs = recordSdkLogs();
  let submitted;
  try {
    submitted = await submitRun({ db: db.db, pipeline, inputPath: dir.file("observe.jsonl", miniItems("observe", 20)), allowEmbedded: true });
    await harness.drain();
  } finally {
    logs.stop();
  }
  const orchestrator = harness.fake.runs.get(submitted.triggerRunId)!;
  expect(orchestrator.status).toBe("COMPLETED");
  const output = orchestrator.output as OrchestratorOutput;

  const messages = logs.lines.map((l) => l.message);
  expect(messages).toContain("stage filter: dispatching 4 chunk run(s) for 20 open item(s)");
  expect(messages.some((m) => /^stage classify chunk 0: \d+ of \d+ queued item\(s\) written$/.test(m))).toBe(true);

  const meta = harness.metadataOf(orchestrator.id)!;
  expect(meta).toMatchObject({ runId: submitted.runId, pipeline: pipeline.id, stage: "commit", costUsd: output.summary.costUsd });
  const stages = meta.stages as Record<string, StageProgress>;
  expect(Object.keys(stages)).toEqual(pipeline.stages.map((s) => s.id));
  for (const s of output.summary.stages) {
    expect(stages[s.id]).toMatchObject({ open: 0, rounds: 1, providerCalls: s.providerCalls, costUsd: s.costUsd });
  }
  expect(stages.filter!.total).toBe(20);
  expect(stages.classify!.providerCalls).toBeGreaterThan(0);

  const tags = [`sluice:${submitted.runId}`, `pipeline:${pipeline.id}`];
  expect(orchestrator.options.tags).toEqual(tags);
  const stageRuns = [...harness.fake.runs.values()].filter((r) => r.taskId.startsWith(`sluice-${pipeline.id}--`));
  expect(stageRuns.length).toBeGreaterThan(0);
  for (const run of stageRuns) expect(run.options.tags).toEqual([...tags, `stage:${run.taskId.split("--")[1]}`]);
});

test("an orchestrator started without a sluice run (from the dashboard, a schedule) tags itself once it has one", async () => {
  const input = dir.file("observe-dash.jsonl", miniItems("observe-dash", 8));
  const handle = await tasks.trigger(`sluice-${pipeline.id}`, { inputPath: input });
  await harness.drain();
  const run = harness.fake.runs.get(handle.id)!;
  expect(run.status).toBe("COMPLETED");
  const runId = (run.output as OrchestratorOutput).summary.runId;
  expect(run.options.tags).toEqual([`sluice:${runId}`, `pipeline:${pipeline.id}`]);
});
