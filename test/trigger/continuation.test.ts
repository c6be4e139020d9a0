import { afterAll, beforeAll, expect, test } from "vitest";
import { runPipeline } from "../../src/runners/local/index.ts";
import { chunkKeyParts, configureTriggerRunner, defineSluiceTasks, submitRun, type ChunkPayload, type OrchestratorOutput } from "../../src/runners/trigger/index.ts";
import { createInProcessProvider, memoryDatabase, singleProvider, type TestDatabase } from "../../src/testing/index.ts";
import { commitTable, miniItems, miniVariant, targetRows, tempDir, workStatuses } from "./data.ts";
import type { FakeRun } from "./fake-api.ts";
import { installTaskCatalog, startTriggerHarness, type TriggerHarness } from "./harness.ts";

/**
 * Continuing a run on Trigger.dev. An orchestrator that gives up with items
 * still open says "trigger the orchestrator again with { runId }"; doing so
 * must finish those items, even though the runs that left them open keep their
 * idempotency keys on the platform (a cancelled run keeps it for 30 days, as
 * does a run that succeeded without finishing its items).
 */

installTaskCatalog();
const pipeline = miniVariant("retrigger");
const TASKS = defineSluiceTasks([pipeline]);
const shoutTask = `sluice-${pipeline.id}--shout`;

let local: TestDatabase;
let remote: TestDatabase;
let harness: TriggerHarness;
const dir = tempDir();

beforeAll(async () => {
  [local, remote] = await Promise.all([memoryDatabase(), memoryDatabase()]);
  harness = await startTriggerHarness();
  configureTriggerRunner({ db: remote.db, providers: singleProvider(createInProcessProvider()), chunkSize: 5, maxSweeps: 1, engine: { leaseMs: 500 } });
});
afterAll(async () => {
  await harness?.close();
  await Promise.all([local?.drop(), remote?.drop()]);
  dir.remove();
});

const stageRunsOf = (parentRunId: string, taskId: string): FakeRun[] =>
  [...harness.fake.runs.values()].filter((r) => r.taskId === taskId && r.batchId && harness.fake.batches.get(r.batchId)!.body.parentRunId === parentRunId);

test("a re-trigger after a failed chunk finishes the open items, and sends only the chunks still open", async () => {
  const input = dir.file("retrigger.jsonl", miniItems("retrigger", 40));
  const reference = runPipeline({ db: local.db, pipeline, providers: singleProvider(createInProcessProvider()) }, input, { fresh: true });

  // While the first orchestrator runs, every run of `shout` for its second
  // chunk is cancelled, in round 0 and in the sweep: the orchestrator gives up.
  harness.faults.cancel = (e) => {
    const p = e.payload as ChunkPayload;
    return e.taskId === shoutTask && (p.round > 0 || p.chunk === 1);
  };
  let first;
  try {
    first = await submitRun({ db: remote.db, pipeline, inputPath: input, allowEmbedded: true });
    await harness.drain();
  } finally {
    harness.faults.cancel = undefined;
  }
  const gaveUp = harness.fake.runs.get(first.triggerRunId)!;
  expect(gaveUp.status).toBe("FAILED");
  expect(gaveUp.error?.message).toMatch(/still has \d+ open items .* trigger the orchestrator again with \{ runId: "/);
  // A retry of the same orchestrator run would send the same keys and get the same cancelled runs back: not retried.
  expect(gaveUp.attempts).toBe(1);
  const cancelled = stageRunsOf(gaveUp.id, shoutTask).filter((r) => r.status === "CANCELED");
  expect(cancelled.length).toBe(2); // round 0 and the sweep

  // The re-trigger the message asks for: a new orchestrator run for the same sluice run.
  const handle = await TASKS.get(pipeline.id)!.orchestrator.trigger({ runId: first.runId });
  await harness.drain();
  const again = harness.fake.runs.get(handle.id)!;
  expect(again.error?.message).toBeUndefined();
  expect(again.status).toBe("COMPLETED");
  const output = again.output as OrchestratorOutput;
  expect(output.summary.runId).toBe(first.runId);
  expect(output.summary.status).toBe("finished");
  expect(output.summary.items.byStatus.queued ?? 0).toBe(0);

  // Only the open chunk of `shout` went out again; stages already done sent nothing.
  const continued = new Map(pipeline.stages.map((s) => [s.id, stageRunsOf(again.id, `sluice-${pipeline.id}--${s.id}`).length]));
  expect(continued.get("filter")).toBe(0);
  expect(continued.get("classify")).toBe(0);
  expect(continued.get("shout")).toBe(1);
  expect(continued.get("validate")).toBeGreaterThan(0);
  const [resent] = stageRunsOf(again.id, shoutTask);
  expect(resent!.output).toMatchObject({ executed: expect.any(Number) });
  expect((resent!.output as { executed: number }).executed).toBeGreaterThan(0);
  expect(resent!.options.idempotencyKeyOptions).toEqual({ key: chunkKeyParts(first.runId, "shout", 1, 0, again.id).join("-"), scope: "global" });

  // The rows are the local runner's.
  const ref = await reference;
  expect(output.summary.items).toEqual(ref.items);
  expect(await targetRows(remote.db, commitTable(pipeline))).toEqual(await targetRows(local.db, commitTable(pipeline)));
  expect(Object.values(await workStatuses(remote.db, first.runId))).toEqual(Object.values(await workStatuses(local.db, ref.runId)));
});
