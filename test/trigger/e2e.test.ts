import { readFileSync } from "node:fs";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { PipelineDef } from "../../src/core/types.ts";
import { runPipeline } from "../../src/runners/local/index.ts";
import { configureTriggerRunner, defineSluiceTasks, submitRun, type OrchestratorOutput } from "../../src/runners/trigger/index.ts";
import { createInProcessProvider, singleProvider, testDrivers, type TestDatabase } from "../../src/testing/index.ts";
import ticketTriage from "../../pipelines/ticket-triage.ts";
import { commitTable, miniItems, miniVariant, targetRows, tempDir, workStatuses } from "./data.ts";
import { installTaskCatalog, startTriggerHarness, type TriggerHarness } from "./harness.ts";

/**
 * Depth 3: whole pipelines through the Trigger.dev path. `submitRun` triggers
 * the orchestrator over HTTP; the fake API executes it and every stage run it
 * dispatches by calling the task functions the SDK registered. Committed
 * results must equal the local runner's on the same data, and retries (of the
 * orchestrator, of a chunk run) must not execute a chunk twice.
 */

installTaskCatalog();
const PIPELINES = {
  clean: miniVariant("clean"),
  crashBefore: miniVariant("crash-before"),
  crashAfter: miniVariant("crash-after"),
  resubmit: miniVariant("resubmit"),
  lost: miniVariant("lost"),
  sweep: miniVariant("sweep"),
  up: miniVariant("up"),
  down: miniVariant("down", { after: "mini-up" }),
};
const TASKS = defineSluiceTasks([...Object.values(PIPELINES), ticketTriage]);
const dir = tempDir();
const ticketsCsv = dir.file("tickets.csv", (parse(readFileSync("examples/data/tickets.csv", "utf8"), { to: 81, raw: true }) as unknown as { raw: string }[]).map((r) => r.raw.replace(/\n$/, "")));
afterAll(() => dir.remove());

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`trigger runner end to end on ${driver.name}${driver.skip ? ` (skipped: ${driver.skip})` : ""}`, () => {
    let local: TestDatabase;
    let remote: TestDatabase;
    let harness: TriggerHarness;
    const remoteProvider = createInProcessProvider();

    beforeAll(async () => {
      [local, remote] = await Promise.all([driver.open(), driver.open()]);
      harness = await startTriggerHarness();
      configureTriggerRunner({ db: remote.db, providers: singleProvider(remoteProvider), chunkSize: 7, engine: { leaseMs: 1_000 } });
    });
    afterAll(async () => {
      await harness?.close();
      await Promise.all([local?.drop(), remote?.drop()]);
    });

    /** Submit over HTTP, let the fake run everything, return the orchestrator's output. */
    async function viaTrigger(pipeline: PipelineDef, input: string) {
      const submitted = await submitRun({ db: remote.db, pipeline, inputPath: input, allowEmbedded: true });
      await harness.drain();
      const run = harness.fake.runs.get(submitted.triggerRunId)!;
      expect(run.error?.message).toBeUndefined();
      expect(run.status).toBe("COMPLETED");
      return { run, output: run.output as OrchestratorOutput };
    }

    async function viaLocal(pipeline: PipelineDef, input: string) {
      return runPipeline({ db: local.db, pipeline, providers: singleProvider(createInProcessProvider()) }, input, { fresh: true });
    }

    /** Compare with the local runner on the same data. Starts it at once, so it runs while the Trigger.dev path does. */
    function localReference(pipeline: PipelineDef, input: string) {
      const reference = viaLocal(pipeline, input);
      reference.catch(() => {}); // awaited by the comparison
      return async (output: OrchestratorOutput) => expectSameResults(pipeline, await reference, output);
    }

    async function expectSameResults(pipeline: PipelineDef, reference: Awaited<ReturnType<typeof viaLocal>>, output: OrchestratorOutput) {
      expect(output.summary.status).toBe("finished");
      expect(output.summary.items).toEqual(reference.items);
      expect(await targetRows(remote.db, commitTable(pipeline))).toEqual(await targetRows(local.db, commitTable(pipeline)));
      expect(Object.values(await workStatuses(remote.db, output.summary.runId))).toEqual(Object.values(await workStatuses(local.db, reference.runId)));
      // One provider call per item that reached an LLM stage: nothing was computed twice.
      expect(output.summary.stages.map((s) => [s.id, s.processed, s.providerCalls])).toEqual(reference.stages.map((s) => [s.id, s.processed, s.providerCalls]));
      return reference;
    }

    /** Stage runs created per chunk (stage, round, chunk) of one pipeline. */
    async function runsPerChunk(pipelineId: string): Promise<number[]> {
      const counts = new Map<string, number>();
      for (const run of harness.fake.runs.values()) {
        if (!run.taskId.startsWith(`sluice-${pipelineId}--`)) continue;
        const p = (await harness.fake.payloadOf(run)) as { stageId: string; round: number; chunk: number };
        const id = `${p.stageId}/${p.round}/${p.chunk}`;
        counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      return [...counts.values()];
    }

    /** Executions of stage runs of one pipeline that actually computed items, by idempotency key. */
    function computingExecutions(pipelineId: string) {
      const byChunk = new Map<string, number>();
      const stageRuns = [...harness.fake.runs.values()].filter((r) => r.taskId.startsWith(`sluice-${pipelineId}--`));
      for (const run of stageRuns) {
        const out = run.output as { executed?: number } | undefined;
        if (out?.executed) byChunk.set(run.options.idempotencyKey, (byChunk.get(run.options.idempotencyKey) ?? 0) + 1);
      }
      const keys = stageRuns.map((r) => `${r.taskId}:${r.options.idempotencyKey}`);
      return { byChunk, stageRuns, distinctKeys: new Set(keys).size, runCount: keys.length };
    }

    test("a pipeline run through Trigger.dev tasks commits what the local runner commits", async () => {
      const input = dir.file(`clean-${driver.name}.jsonl`, miniItems(`clean-${driver.name}`, 36));
      const compare = localReference(PIPELINES.clean, input);
      const { output } = await viaTrigger(PIPELINES.clean, input);
      const reference = await compare(output);
      expect(reference.items.byStatus.committed).toBeGreaterThan(12);
      expect(output.stages.map((s) => s.rounds.length)).toEqual([1, 1, 1, 1, 1]);
      expect(output.stages[0]!.rounds[0]!.chunks).toBe(Math.ceil(36 / 7));
    });

    test("the demo pipeline (80 tickets) commits the same rows through Trigger.dev as locally", async () => {
      const compare = localReference(ticketTriage, ticketsCsv);
      const { output } = await viaTrigger(ticketTriage, ticketsCsv);
      const reference = await compare(output);
      expect(reference.items.total).toBe(80);
    });

    test("an orchestrator that dies halfway through a stage's batch is retried and no chunk runs twice", async () => {
      const input = dir.file(`crash-${driver.name}.jsonl`, miniItems(`crash-${driver.name}`, 30));
      // The third stage's batch goes out, two of its runs finish, then the orchestrator's worker dies.
      harness.faults.crash = { wait: harness.waitCount() + 3, afterRuns: 2 };
      const executionsBefore = harness.executions.length;
      try {
        const compare = localReference(PIPELINES.crashBefore, input);
        const { run, output } = await viaTrigger(PIPELINES.crashBefore, input);
        expect(run.attempts).toBe(2);
        await compare(output);
        // The retry sent nothing for the two stages the first attempt finished, cut the same
        // chunks as the first attempt for the rest, and no stage needed a second round.
        expect(output.stages.map((s) => s.rounds.length)).toEqual([0, 0, 1, 1, 1]);
      } finally {
        harness.faults.crash = undefined;
      }
      const { byChunk, distinctKeys, runCount } = computingExecutions(PIPELINES.crashBefore.id);
      expect(runCount).toBe(distinctKeys); // the re-sent keys were deduplicated, not run again
      expect([...byChunk.values()].every((n) => n === 1)).toBe(true);
      const stageExecutions = harness.executions.slice(executionsBefore).filter((e) => e.taskId.includes("--"));
      expect(stageExecutions.length).toBe(runCount); // each stage run executed once, across both attempts
    });

    test("an orchestrator that dies after a stage finished re-sends its keys and starts nothing new", async () => {
      const input = dir.file(`crash-after-${driver.name}.jsonl`, miniItems(`crash-after-${driver.name}`, 30));
      harness.faults.crash = { wait: harness.waitCount() + 2 };
      const executionsBefore = harness.executions.length;
      try {
        const compare = localReference(PIPELINES.crashAfter, input);
        const { run, output } = await viaTrigger(PIPELINES.crashAfter, input);
        expect(run.attempts).toBe(2);
        await compare(output);
      } finally {
        harness.faults.crash = undefined;
      }
      const stageExecutions = harness.executions.slice(executionsBefore).filter((e) => e.taskId.includes("--"));
      const { stageRuns } = computingExecutions(PIPELINES.crashAfter.id);
      expect(stageExecutions.length).toBe(stageRuns.length); // every stage run executed once, across both attempts
    });

    test("a run whose orchestrator gave up is submitted again and continues without dispatching any chunk twice", async () => {
      const input = dir.file(`resubmit-${driver.name}.jsonl`, miniItems(`resubmit-${driver.name}`, 30));
      harness.faults.crash = { wait: harness.waitCount() + 3, afterRuns: 2 };
      harness.faults.failBeforeRun = (e) => e.taskId === "sluice-mini-resubmit" && e.attempt > 1;
      let first;
      try {
        first = await submitRun({ db: remote.db, pipeline: PIPELINES.resubmit, inputPath: input, allowEmbedded: true });
        await harness.drain();
        expect(harness.fake.runs.get(first.triggerRunId)!.status).toBe("FAILED");
      } finally {
        harness.faults.crash = undefined;
        harness.faults.failBeforeRun = undefined;
      }
      // A new orchestrator run (new Trigger.dev run id) for the same sluice run: the keys are global, so they match.
      const compare = localReference(PIPELINES.resubmit, input);
      const { run, output } = await viaTrigger(PIPELINES.resubmit, input);
      expect(run.id).not.toBe(first.triggerRunId);
      expect(output.summary.runId).toBe(first.runId);
      await compare(output);
      expect((await runsPerChunk(PIPELINES.resubmit.id)).every((n) => n === 1)).toBe(true);
    });

    test("a chunk run whose worker is lost after writing is retried and recomputes nothing", async () => {
      const input = dir.file(`lost-${driver.name}.jsonl`, miniItems(`lost-${driver.name}`, 20));
      harness.faults.failAfterRun = (e) => e.taskId === "sluice-mini-lost--classify" && e.attempt === 1 && e.payload.chunk === 0;
      try {
        const compare = localReference(PIPELINES.lost, input);
        const { output } = await viaTrigger(PIPELINES.lost, input);
        await compare(output);
      } finally {
        harness.faults.failAfterRun = undefined;
      }
      const retried = [...harness.fake.runs.values()].find((r) => r.taskId === "sluice-mini-lost--classify" && r.attempts === 2)!;
      expect(retried.output).toMatchObject({ chunk: 0, executed: 0, queued: 0 });
    });

    test("a chunk run that fails all its attempts is swept up in a second round", async () => {
      const input = dir.file(`sweep-${driver.name}.jsonl`, miniItems(`sweep-${driver.name}`, 24));
      harness.faults.failBeforeRun = (e) => e.taskId === "sluice-mini-sweep--shout" && e.payload.round === 0 && e.payload.chunk === 1;
      try {
        const compare = localReference(PIPELINES.sweep, input);
        const { output } = await viaTrigger(PIPELINES.sweep, input);
        await compare(output);
        const shout = output.stages.find((s) => s.stageId === "shout")!;
        expect(shout.rounds.map((r) => [r.round, r.chunks, r.failedRuns])).toEqual([[0, shout.rounds[0]!.chunks, 1], [1, 1, 0]]);
      } finally {
        harness.faults.failBeforeRun = undefined;
      }
    });

    test("a pipeline declared `after` another runs once when the upstream commit stage finishes", async () => {
      const input = dir.file(`up-${driver.name}.jsonl`, miniItems(`up-${driver.name}`, 20));
      const { run, output } = await viaTrigger(PIPELINES.up, input);
      expect(output.downstream).toEqual(["mini-down"]);
      const downstream = [...harness.fake.runs.values()].filter((r) => r.taskId === "sluice-mini-down");
      expect(downstream).toHaveLength(1);
      expect(downstream[0]!.status).toBe("COMPLETED");
      const down = downstream[0]!.output as OrchestratorOutput;
      expect(down.summary.items.total).toBe(20);
      // A retried upstream orchestrator (same Trigger.dev run) starts no second downstream run.
      await harness.runTask(TASKS.get("mini-up")!.orchestrator.id, await harness.fake.payloadOf(run), run.id, 2);
      await harness.drain();
      expect([...harness.fake.runs.values()].filter((r) => r.taskId === "sluice-mini-down")).toHaveLength(1);
    });
  });
}
