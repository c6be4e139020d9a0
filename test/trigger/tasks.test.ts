import { resourceCatalog } from "@trigger.dev/core/v3";
import { runInMockTaskContext } from "@trigger.dev/core/v3/test";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createOrContinueRun, ensureLoaded, openRun, planStages, prepareStage } from "../../src/engine/index.ts";
import {
  configureTriggerRunner, defineSluiceTasks, inputsFromEnv, limitsFromEnv, orchestrate, runStageChunk, triggerRuntime,
  type ChunkOutput, type ChunkPayload, type DispatchItem, type OrchestratorDeps,
} from "../../src/runners/trigger/index.ts";
import { createInProcessProvider, memoryDatabase, singleProvider, type TestDatabase } from "../../src/testing/index.ts";
import { miniItems, miniVariant, tempDir } from "./data.ts";
import { installTaskCatalog } from "./harness.ts";

/**
 * Depth 1: the task functions themselves, taken from the SDK's task catalog
 * (what `task()` registered) and run in-process in a mock task context; no
 * HTTP at all. The orchestrator's dispatch calls the stage tasks' registered
 * functions directly.
 */

installTaskCatalog();
const unit = miniVariant("unit");
const nightly = miniVariant("unit-nightly", { schedule: { cron: "30 6 * * *" } });
const TASKS = defineSluiceTasks([unit, nightly], { limits: { rpm: { openai: 2400 } } });

const signal = new AbortController().signal;
const runStageTask = (stageId: string, payload: ChunkPayload, attempt = 1) =>
  runInMockTaskContext(({ ctx }) => resourceCatalog.getTask(`sluice-mini-unit--${stageId}`)!.fns.run(payload, { ctx, signal }) as Promise<ChunkOutput>, {
    ctx: { run: { id: `run_${stageId}_${payload.chunk}` }, attempt: { number: attempt } },
  });

let db: TestDatabase;
const dir = tempDir();
beforeAll(async () => {
  db = await memoryDatabase();
  configureTriggerRunner({ db: db.db, providers: singleProvider(createInProcessProvider()), chunkSize: 5, runsPerBatch: 3 });
});
afterAll(async () => {
  await db?.drop();
  dir.remove();
});

async function preparedRun(tag: string, n: number) {
  const { run } = await createOrContinueRun(db.db, unit, planStages(unit), dir.file(`${tag}.jsonl`, miniItems(tag, n)), { fresh: true });
  const { ctx } = await openRun({ db: db.db, pipeline: unit, providers: singleProvider(createInProcessProvider()), runId: run.id });
  await ensureLoaded(ctx, run);
  const ids = await prepareStage(ctx, 0);
  return { runId: run.id, ids };
}

const statusesOf = async (runId: string) =>
  Object.fromEntries((await db.db.rows<{ item_id: string; status: string }>(sql`SELECT item_id, status FROM work WHERE run_id = ${runId} AND stage_index = 0`)).map((r) => [r.item_id, r.status]));

describe("task definitions", () => {
  test("each pipeline becomes an orchestrator, one task per stage, and a scheduled task when it has a schedule", () => {
    const ids = resourceCatalog.listTaskManifests().map((t) => t.id).sort();
    expect(ids).toEqual([
      "sluice-mini-unit", "sluice-mini-unit--classify", "sluice-mini-unit--commit", "sluice-mini-unit--filter", "sluice-mini-unit--shout", "sluice-mini-unit--validate",
      "sluice-mini-unit-nightly", "sluice-mini-unit-nightly--classify", "sluice-mini-unit-nightly--commit", "sluice-mini-unit-nightly--filter",
      "sluice-mini-unit-nightly--schedule", "sluice-mini-unit-nightly--shout", "sluice-mini-unit-nightly--validate",
    ]);
    expect(resourceCatalog.getTaskManifest("sluice-mini-unit-nightly--schedule")).toMatchObject({ schedule: { cron: "30 6 * * *", timezone: "UTC" } });
    expect(TASKS.get("mini-unit")!.schedule).toBeUndefined();
  });

  test("stage concurrency comes from the provider's RPM budget, shared across pipelines; retries stay small", () => {
    const classify = resourceCatalog.getTaskManifest("sluice-mini-unit--classify")!;
    const filter = resourceCatalog.getTaskManifest("sluice-mini-unit--filter")!;
    // 2,400 RPM / (8 calls in flight per run * 30 RPM per call slot) = 10 runs at once, for both pipelines together.
    expect(classify.concurrency).toEqual({ limits: ["sluice-provider-openai"] });
    expect(resourceCatalog.listConcurrencyLimitManifests()).toEqual([expect.objectContaining({ name: "sluice-provider-openai", total: 10 })]);
    expect(resourceCatalog.getTaskManifest("sluice-mini-unit-nightly--classify")!.concurrency).toEqual({ limits: ["sluice-provider-openai"] });
    expect(filter.concurrency).toEqual({ inline: { total: 10 } });
    for (const manifest of [classify, filter]) {
      expect(manifest.retry).toMatchObject({ maxAttempts: 3, maxTimeoutInMs: 10_000 });
      expect(manifest.maxDuration).toBe(900);
    }
    expect(resourceCatalog.getTaskManifest("sluice-mini-unit")).toMatchObject({ retry: { maxAttempts: 3 }, maxDuration: 3600 });
  });
});

describe("the stage task", () => {
  test("executes the items of its range, and a second delivery of the same chunk computes nothing", async () => {
    const { runId, ids } = await preparedRun("range", 12);
    const payload: ChunkPayload = { runId, pipelineId: "mini-unit", stageIndex: 0, stageId: "filter", round: 0, chunk: 1, first: ids[3]!, last: ids[7]! };
    const first = await runStageTask("filter", payload);
    expect(first).toMatchObject({ queued: 5, executed: 5 });
    const after = await statusesOf(runId);
    expect(ids.filter((id) => after[id] === "queued")).toEqual([...ids.slice(0, 3), ...ids.slice(8)]);
    expect(await runStageTask("filter", payload)).toMatchObject({ queued: 0, executed: 0, byStatus: {} });
  });

  test("a retried attempt takes back what a dead attempt had claimed; a first attempt does not", async () => {
    const { runId, ids } = await preparedRun("reclaim", 6);
    // An earlier attempt claimed three items and died without a heartbeat row.
    await db.db.rows(sql`UPDATE work SET status = 'processing', claimed_by = 'trg_dead' WHERE run_id = ${runId} AND stage_index = 0 AND item_id IN (${ids[0]}, ${ids[1]}, ${ids[2]})`);
    const payload: ChunkPayload = { runId, pipelineId: "mini-unit", stageIndex: 0, stageId: "filter", round: 0, chunk: 0, first: ids[0]!, last: ids[5]! };
    expect(await runStageTask("filter", payload, 1)).toMatchObject({ queued: 3, executed: 3 });
    expect(await runStageTask("filter", payload, 2)).toMatchObject({ queued: 3, executed: 3 });
    expect(Object.values(await statusesOf(runId)).filter((s) => s === "queued" || s === "processing")).toEqual([]);
  });

  test("a payload naming another stage than the deployed pipeline's is aborted, not retried", async () => {
    const { runId, ids } = await preparedRun("mismatch", 2);
    const payload: ChunkPayload = { runId, pipelineId: "mini-unit", stageIndex: 0, stageId: "classify", round: 0, chunk: 0, first: ids[0]!, last: ids[1]! };
    await expect(runStageTask("classify", payload)).rejects.toMatchObject({ name: "AbortTaskRunError" });
  });
});

describe("the orchestrator", () => {
  test("runs every stage in chunks through the registered stage tasks, in batches of the configured size", async () => {
    const seen: { stageId: string; chunks: number[] }[] = [];
    const tasks = TASKS.get("mini-unit")!;
    const deps: OrchestratorDeps = {
      ...tasks.deps,
      async dispatch(stage, items: DispatchItem[]) {
        seen.push({ stageId: stage.id, chunks: items.map((i) => i.payload.chunk) });
        for (const item of items) await runStageTask(stage.id, item.payload);
        return { ok: items.length, failed: 0 };
      },
    };
    const input = dir.file("orchestrated.jsonl", miniItems("orchestrated", 23));
    const out = await orchestrate(deps, { inputPath: input }, "run_orchestrator_unit", signal);
    expect(out.summary.status).toBe("finished");
    expect(out.summary.items.total).toBe(23);
    // filter: 23 items / 5 per run = 5 chunks, sent 3 + 2.
    expect(seen[0]).toEqual({ stageId: "filter", chunks: [0, 1, 2] });
    expect(seen[1]).toEqual({ stageId: "filter", chunks: [3, 4] });
    expect(out.stages.map((s) => s.stageId)).toEqual(unit.stages.map((s) => s.id));
    expect(out.stages.every((s) => s.rounds.length === 1 && s.rounds[0]!.batches.every((b) => b <= 3))).toBe(true);
    // The same Trigger.dev run id (a retried attempt) continues the same sluice run.
    const again = await orchestrate(deps, { inputPath: input }, "run_orchestrator_unit", signal);
    expect(again.summary.runId).toBe(out.summary.runId);
  });
});

describe("a budget on Trigger.dev", () => {
  test("a chunk run that reaches the run's budget stops the run (no retry, no sweep, no next stage); triggered again with a larger budget it finishes", async () => {
    // Every call costs $0.001 here (and reserves as much): ten fit in the pipeline's $0.0105 per run.
    const budgeted = miniVariant("budgeted", { budget: { perRun: 0.0105 } });
    configureTriggerRunner({ db: db.db, providers: singleProvider(createInProcessProvider(), () => 0.001), chunkSize: 5, runsPerBatch: 3 });
    try {
      const outputs: ChunkOutput[] = [];
      const deps: OrchestratorDeps = {
        pipeline: budgeted,
        downstream: [],
        startDownstream: async () => {},
        async dispatch(_stage, items: DispatchItem[]) {
          // A chunk run that threw would be retried by Trigger.dev: none may throw for a budget.
          for (const item of items) outputs.push(await runStageChunk(budgeted, item.payload, { signal }));
          return { ok: items.length, failed: 0 };
        },
      };
      const input = dir.file("budgeted.jsonl", miniItems("budgeted", 23));
      const out = await orchestrate(deps, { inputPath: input }, "run_orchestrator_budget", signal);
      expect(out.summary.status).toBe("budget_exhausted");
      expect(out.summary.budget).toMatchObject({ capUsd: 0.0105, spentUsd: expect.closeTo(0.01, 9) });
      expect(outputs.some((o) => o.budgetExhausted)).toBe(true);
      // Classify stopped in its first round; the stages after it were not dispatched.
      expect(out.stages.map((s) => s.stageId)).toEqual(["filter", "classify"]);
      expect(out.stages[1]!.rounds).toHaveLength(1);
      const classify = out.summary.stages.find((s) => s.id === "classify")!;
      expect(classify.providerCalls).toBe(10);
      expect(out.summary.items.byStatus.failed_terminal ?? 0).toBe(0);

      const again = await orchestrate(deps, { runId: out.summary.runId, budget: 1 }, "run_orchestrator_budget_2", signal);
      expect(again.summary.status).toBe("finished");
      expect(again.summary.budget).toMatchObject({ capUsd: 1 });
      const calls = again.summary.stages.find((s) => s.id === "classify")!;
      // Each item that reached classify was paid for once, across both orchestrators.
      expect(calls.providerCalls).toBe(calls.processed - calls.reused);
    } finally {
      configureTriggerRunner({ db: db.db, providers: singleProvider(createInProcessProvider()), chunkSize: 5, runsPerBatch: 3 });
    }
  });
});

describe("configuration from the environment", () => {
  test("RPM budgets and scheduled inputs are read from SLUICE_ variables", () => {
    expect(limitsFromEnv({ SLUICE_RPM_OPENAI: "3000", SLUICE_RPM_ANTHROPIC: "x", SLUICE_TRIGGER_CALLS_PER_RUN: "4" })).toEqual({ rpm: { openai: 3000 }, callsPerRun: 4 });
    expect(inputsFromEnv({ SLUICE_INPUT_TICKET_TRIAGE: "/data/t.csv", SLUICE_INPUT_EMPTY: "" })).toEqual({ "ticket-triage": "/data/t.csv" });
  });

  test("a worker without DATABASE_URL says what to set instead of falling back to an embedded store", async () => {
    configureTriggerRunner({});
    try {
      await expect(triggerRuntime({})).rejects.toThrow(/DATABASE_URL is not set: Trigger.dev tasks need the Postgres database/);
    } finally {
      configureTriggerRunner({ db: db.db, providers: singleProvider(createInProcessProvider()), chunkSize: 5, runsPerBatch: 3 });
    }
  });
});
