import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runPipeline } from "../../src/runners/local/index.ts";
import { configureTriggerRunner, defineSluiceTasks, submitRun, type OrchestratorOutput } from "../../src/runners/trigger/index.ts";
import { createInProcessProvider, singleProvider, testDrivers, type TestDatabase } from "../../src/testing/index.ts";
import branches from "../fixtures/pipelines/branches.ts";
import { demoSlice } from "../e2e/data.ts";
import { commitTable, targetRows, workStatuses } from "./data.ts";
import { installTaskCatalog, startTriggerHarness, type TriggerHarness } from "./harness.ts";

/**
 * The branched demo (classify → billing | bugs → validate → commit) through
 * Trigger.dev tasks: the orchestrator fans the chunks of `billing` and `bugs`
 * out in the same batches, and what it commits equals what the local runner
 * commits on the same tickets.
 */

installTaskCatalog();
const TASKS = defineSluiceTasks([branches]);
let input: string;
beforeAll(() => {
  input = demoSlice(80);
});

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`a branched pipeline through Trigger.dev on ${driver.name}`, () => {
    let local: TestDatabase;
    let remote: TestDatabase;
    let harness: TriggerHarness;

    beforeAll(async () => {
      [local, remote] = await Promise.all([driver.open(), driver.open()]);
      harness = await startTriggerHarness();
      configureTriggerRunner({ db: remote.db, providers: singleProvider(createInProcessProvider()), chunkSize: 7, engine: { leaseMs: 1_000 } });
    });
    afterAll(async () => {
      await harness?.close();
      await Promise.all([local?.drop(), remote?.drop()]);
    });

    test("fans both branches out together and commits what the local runner commits", async () => {
      const reference = await runPipeline({ db: local.db, pipeline: branches, providers: singleProvider(createInProcessProvider()) }, input, { fresh: true });
      const submitted = await submitRun({ db: remote.db, pipeline: branches, inputPath: input, allowEmbedded: true });
      await harness.drain();
      const run = harness.fake.runs.get(submitted.triggerRunId)!;
      expect(run.error?.message).toBeUndefined();
      expect(run.status).toBe("COMPLETED");
      const output = run.output as OrchestratorOutput;

      expect(output.summary.status).toBe("finished");
      expect(output.summary.items).toEqual(reference.items);
      expect(reference.items.byStatus.committed).toBeGreaterThan(0);
      expect(await targetRows(remote.db, commitTable(branches))).toEqual(await targetRows(local.db, commitTable(branches)));
      expect(Object.values(await workStatuses(remote.db, output.summary.runId))).toEqual(Object.values(await workStatuses(local.db, reference.runId)));
      expect(output.summary.stages.map((s) => [s.id, s.processed, s.providerCalls])).toEqual(reference.stages.map((s) => [s.id, s.processed, s.providerCalls]));

      // Every stage got its round; billing's and bugs' chunk runs went out in the same batches.
      expect(output.stages.map((s) => s.stageId)).toEqual(["classify", "billing", "bugs", "validate", "commit"]);
      const batchesOf = (stageId: string) =>
        new Set([...harness.fake.runs.values()].filter((r) => r.taskId === `sluice-ticket-branches--${stageId}`).map((r) => r.batchId));
      const billingBatches = batchesOf("billing");
      const bugBatches = batchesOf("bugs");
      expect(billingBatches.size).toBeGreaterThan(0);
      expect([...bugBatches]).toEqual([...billingBatches]);
      expect(batchesOf("classify").has([...billingBatches][0])).toBe(false);
    }, 300_000);
  });
}
