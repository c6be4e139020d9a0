import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, expect, test } from "vitest";
import { definePipeline } from "../../src/core/define.ts";
import { isLlmStage } from "../../src/core/types.ts";
import { costOf, createProvider } from "../../src/providers/index.ts";
import { configureTriggerRunner, defineSluiceTasks, submitRun, type OrchestratorOutput } from "../../src/runners/trigger/index.ts";
import { startSimulator, type Simulator } from "../../src/sim/index.ts";
import { requireRun } from "../../src/store/runs.ts";
import { memoryDatabase, type TestDatabase } from "../../src/testing/index.ts";
import { miniItems, miniVariant, tempDir } from "./data.ts";
import { installTaskCatalog, startTriggerHarness, type TriggerHarness } from "./harness.ts";

/**
 * A deadline on the Trigger.dev path, where a batch stage's chunk run submits
 * its provider batch and waits between polls with `wait.for` (suspended, and
 * resumed as a fresh invocation). The provider's batches came back at once
 * before, so the stage goes by batch; this time the batch is slow, so at its
 * cutoff the resumed chunk run cancels it, keeps what it finished at the batch
 * price, sends the rest realtime, and the run finishes before its deadline
 * with nothing paid twice.
 *
 * The fake resumes a waiting run at once; here it honours the wait, as the
 * platform does, so the polls are as far apart as a deployed run's (10 s).
 */

installTaskCatalog();
const base = miniVariant("deadline");
const pipeline = definePipeline({ ...base, stages: base.stages.map((s) => (isLlmStage(s) ? { ...s, provider: "openai" as const, mode: "auto" as const } : s)) });
defineSluiceTasks([pipeline]);

/**
 * The cutoff leaves a tenth of the run's time, 12 s: after it, a wait of a second, the realtime rest
 * and the later stages (each a task run through the fake) took 2-4 s here on a loaded machine.
 */
const DEADLINE = "120s";
/** Items of each run; every ninth is empty and filtered out, so 27 of 30 reach classify. */
const ITEMS = 30;
const CLASSIFIED = 27;

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
    providers: { defaultProvider: "openai", get: () => openai, cost: costOf, endpointOf: () => "openai@simulator" },
    chunkSize: 10,
    engine: { batchPollMs: 10, batchPollMaxMs: 20, leaseMs: 500, autoBatchMinItems: 20 },
  });
});
afterAll(async () => {
  await harness?.close();
  await Promise.all([sim?.close(), db?.drop()]);
  dir.remove();
});

async function run(tag: string, n: number, deadline?: string) {
  const submitted = await submitRun({ db: db.db, pipeline, inputPath: dir.file(`${tag}.jsonl`, miniItems(tag, n)), allowEmbedded: true, deadline });
  await harness.drain();
  const orchestrator = harness.fake.runs.get(submitted.triggerRunId)!;
  expect(orchestrator.status).toBe("COMPLETED");
  return { runId: submitted.runId, out: orchestrator.output as OrchestratorOutput };
}

test("a batch still running at its cutoff is cancelled by the resumed chunk run; what it finished is kept, the rest goes realtime, before the deadline", async () => {
  // History: realtime latency (too few calls for a batch), then a batch that comes back at once.
  sim.configure({ batch: { processingMs: 0, pollsToComplete: 0 } });
  const warmup = await run("warmup", 6);
  expect(warmup.out.summary.stages.find((s) => s.id === "classify")!.batchCalls).toBe(0);
  const fast = await run("fast", ITEMS);
  expect(fast.out.summary.stages.find((s) => s.id === "classify")!.batchCalls).toBe(CLASSIFIED);

  // This time a batch moves a 24th of the way per poll. Polls are at least 10 s apart (a deployed
  // run's shortest wait) until the cutoff, 108 s in: at most thirteen polls, so it cannot finish in time.
  sim.reset();
  sim.configure({ batch: { processingMs: 0, pollsToComplete: 24 } });
  harness.faults.onSuspend = async (r) => {
    const until = r.waits.at(-1)?.until;
    if (until) await sleep(Math.min(15_000, Math.max(0, Date.parse(until) - Date.now())));
  };
  const earlier = new Set(harness.fake.runs.keys());
  let late: Awaited<ReturnType<typeof run>>;
  try {
    late = await run("late", ITEMS, DEADLINE);
  } finally {
    harness.faults.onSuspend = undefined;
  }
  const summary = late.out.summary;
  const row = await requireRun(db.db, late.runId);
  const deadlineAt = new Date(row.options.deadlineAt as string);
  expect(summary.status).toBe("finished");
  expect(new Date(summary.finishedAt!).getTime()).toBeLessThan(deadlineAt.getTime());

  // The chunk run waited (suspended) for its batch, and a fresh invocation of it made the cut.
  const chunkRuns = [...harness.fake.runs.values()].filter((r) => r.taskId === `sluice-${pipeline.id}--classify` && !earlier.has(r.id));
  expect(chunkRuns.length).toBe(1);
  expect(chunkRuns[0]!.suspensions).toBeGreaterThanOrEqual(2);

  // Every item got its answer, from the batch or realtime.
  const classify = summary.stages.find((s) => s.id === "classify")!;
  expect(classify.providerCalls).toBe(CLASSIFIED);
  for (const s of ["failed_retryable", "failed_terminal", "queued", "processing"]) expect(summary.items.byStatus[s]).toBeUndefined();
  const stats = sim.stats();
  expect(stats.batches.created).toBe(1);
  expect(stats.batches.cancelled).toBe(1);
  // What the batch finished is paid at the batch price, the rest realtime: the summary and the provider agree on which.
  expect(classify.batchCalls).toBe(stats.batchCalls);
  expect(classify.providerCalls - classify.batchCalls).toBe(stats.realtimeCalls);
  expect(stats.batchCalls).toBeGreaterThan(0);
  expect(stats.realtimeCalls).toBeGreaterThan(0);
  expect(classify.batchSavedUsd).toBeGreaterThan(0);
  // Nothing twice.
  expect(stats.billed).toBe(CLASSIFIED);
  expect(Object.values(stats.billedByRequestHash).every((n) => n === 1)).toBe(true);
  expect(stats.billedAgainHow).toEqual({});

  // The mode chosen, and the switch after the cut, are in the run.
  expect((row.options.stageModes as Record<string, string>).classify).toBe("realtime");
  const why = (row.options.stageModeWhy as Record<string, string>).classify!;
  expect(why).toMatch(new RegExp(`^${CLASSIFIED} calls; the slowest of openai@simulator's last 1 batch took \\d+(ms|s), within the .* before the batch would be cut for the deadline`));
  expect(why).toMatch(new RegExp(`then openai batch \\S+ still running at its cutoff .*, cancelled: ${stats.batchCalls} of ${CLASSIFIED} answers kept at the batch price, ${stats.realtimeCalls} sent realtime$`));
}, 300_000);
