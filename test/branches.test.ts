import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { definePipeline } from "../src/core/define.ts";
import type { LlmStage, PipelineDef } from "../src/core/types.ts";
import type { ProviderSet, RunContext, StagePlan } from "../src/engine/context.ts";
import { runUnits } from "../src/engine/drive/graph.ts";
import { segmentsOf } from "../src/engine/drive/segments.ts";
import { planStages } from "../src/engine/plan.ts";
import { prepareRerun } from "../src/engine/rerun.ts";
import { resumeRun, runPipeline } from "../src/runners/local/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { targetRows, workOutputs } from "../src/store/reports.ts";
import type { Database } from "../src/store/database.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import branches from "./fixtures/pipelines/branches.ts";
import { stagesFor } from "../stages/index.ts";
import { runPipelineForTest } from "../src/testing/harness.ts";
import { itemPage } from "../src/store/run-details.ts";
import { itemsOfRun } from "../src/store/spend.ts";
import { estimateCost } from "../src/inspect/estimate.ts";
import { carriedPairs, recordedReads } from "../src/core/dag.ts";
import { demoSlice } from "./e2e/data.ts";
import { simulatedProviders } from "./fixtures/simulated.ts";

/**
 * The demo's extract split into two branches (`billing` for billing and
 * refund tickets, `bugs` for bug tickets) that read only `classify` and meet
 * at validate: both branches run in one pass of the run, an item goes on
 * through the branch that takes it, and a prompt change on one branch makes
 * no call on the other (counted by the simulator, over the official SDK).
 */

let sim: Simulator;
let input: string;
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
  input = demoSlice(60);
});
afterAll(async () => {
  await sim?.close();
});

const providerSet = (): ProviderSet => simulatedProviders(sim);

/** The pipeline with one branch's prompt changed. */
function withPrompt(base: PipelineDef, stageId: "billing" | "bugs", user: string): PipelineDef {
  return definePipeline({ ...base, stages: base.stages.map((s) => (s.id === stageId ? ({ ...s, prompt: { user } } as LlmStage) : s)) });
}

type ByItem = Record<string, { status: string; output: unknown }>;

async function byItem(db: Database, runId: string, stageId: string): Promise<ByItem> {
  return Object.fromEntries((await workOutputs(db, runId, stageId)).map((r) => [r.item_id, { status: r.status, output: r.output }]));
}

const callsOf = (summary: { stages: { id: string; providerCalls: number }[] }) => Object.fromEntries(summary.stages.map((s) => [s.id, s.providerCalls]));

describe("scheduling a graph of stages", () => {
  it("cuts segments where branches part or meet, and keeps a list of stages one segment", () => {
    const ctx = { plan: planStages(branches), pipeline: branches, providers: providerSet() } as unknown as RunContext;
    expect(segmentsOf(ctx, ctx.plan).map((s) => s.map((p) => p.id))).toEqual([["classify"], ["billing"], ["bugs"], ["validate", "commit"]]);
  });

  it("starts independent units together and a unit only once what it reads has finished", async () => {
    // a → (b | c) → d. b finishes only once c has started: run one after the other, this never ends.
    const plan = [[], [0], [0], [1, 2]].map((reads, index) => ({ index, id: "abcd"[index]!, kind: "map", version: "v", reads })) as StagePlan[];
    const ctx = { db: { kind: "pglite" }, plan } as unknown as RunContext;
    const log: string[] = [];
    let cStarted = () => {};
    const cIsRunning = new Promise<void>((resolve) => (cStarted = resolve));
    await runUnits(ctx, plan.map((s) => [s]), async ([s]) => {
      log.push(`start ${s!.id}`);
      if (s!.id === "c") cStarted();
      if (s!.id === "b") await cIsRunning;
      await new Promise((r) => setTimeout(r, 5));
      log.push(`end ${s!.id}`);
    });
    expect(log.slice(0, 3)).toEqual(["start a", "end a", "start b"]);
    expect(log).toContain("start c");
    expect(log.indexOf("start d")).toBeGreaterThan(Math.max(log.indexOf("end b"), log.indexOf("end c")));
  }, 30_000);

  it("lets the units running finish when one fails, starts no other, and throws the failure", async () => {
    const plan = [[], [0], [0], [1, 2]].map((reads, index) => ({ index, id: "abcd"[index]!, kind: "map", version: "v", reads })) as StagePlan[];
    const ctx = { db: { kind: "pglite" }, plan } as unknown as RunContext;
    const ended: string[] = [];
    const run = runUnits(ctx, plan.map((s) => [s]), async ([s]) => {
      if (s!.id === "b") throw new Error("b failed");
      await new Promise((r) => setTimeout(r, 20));
      ended.push(s!.id);
    });
    await expect(run).rejects.toThrow("b failed");
    expect(ended).toEqual(["a", "c"]);
  }, 30_000);
});

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`the branched demo on ${driver.name}`, () => {
    let t: TestDatabase;
    afterEach(async () => {
      await t?.drop();
    });

    it("runs both branches, counts each item once, and a prompt change on one branch makes no call on the other", async () => {
      t = await driver.open();
      const providers = providerSet();
      sim.reset();
      const first = await runPipeline({ db: t.db, pipeline: branches, providers }, input, { fresh: true });
      expect(first.status).toBe("finished");
      const [classify, billing, bugs, validate] = (await Promise.all(["classify", "billing", "bugs", "validate"].map((s) => byItem(t.db, first.runId, s)))) as [ByItem, ByItem, ByItem, ByItem];
      const category = (id: string) => (classify[id]!.output as { category: string }).category;
      const billingIds = Object.keys(classify).filter((id) => ["billing", "refund"].includes(category(id))).sort();
      const bugIds = Object.keys(classify).filter((id) => category(id) === "bug").sort();
      const neither = Object.keys(classify).filter((id) => !billingIds.includes(id) && !bugIds.includes(id));
      expect(billingIds.length).toBeGreaterThan(0);
      expect(bugIds.length).toBeGreaterThan(0);
      expect(neither.length).toBeGreaterThan(0);
      // Each branch has every classified item: it went on there, or its gate kept it out.
      expect(Object.keys(billing).filter((id) => billing[id]!.status !== "gated_out").sort()).toEqual(billingIds);
      expect(Object.keys(bugs).filter((id) => bugs[id]!.status !== "gated_out").sort()).toEqual(bugIds);
      // Validate is reached through either branch, and by nothing else.
      expect(Object.keys(validate).sort()).toEqual([...billingIds, ...bugIds].sort());
      // Each item counted once: a billing ticket gated out of `bugs` is committed, not gated out.
      const by = first.items.byStatus;
      expect(by.committed).toBe(billingIds.length + bugIds.length - (by.needs_review ?? 0) - (by.failed_terminal ?? 0));
      expect(by.gated_out).toBe(neither.length);
      expect(Object.values(by).reduce((a, b) => a + b, 0)).toBe(first.items.total);
      // The branch an item skipped reads as undefined downstream.
      const rows = await targetRows(t.db, "ticket_branches");
      for (const id of billingIds) if (rows.find((r) => r.key === id)) expect(rows.find((r) => r.key === id)!.data).toMatchObject({ branch: "billing", product: null, severity: null });
      for (const id of bugIds) if (rows.find((r) => r.key === id)) expect(rows.find((r) => r.key === id)!.data).toMatchObject({ branch: "bugs", order_id: null, amount: null });
      // An estimate over the same items walks the branches as the run did: nothing left to pay.
      const items = (await itemsOfRun(t.db, first.runId)).map((r) => ({ itemId: r.item_id, item: r.data, contentHash: r.content_hash }));
      const est = await estimateCost({ db: t.db, pipeline: branches, providers }, { source: "first run", items });
      expect(Object.fromEntries(est.stages.map((s) => [s.id, s.reach.mid]))).toEqual({
        classify: Object.keys(classify).length, billing: billingIds.length, bugs: bugIds.length, validate: billingIds.length + bugIds.length, commit: expect.any(Number),
      });
      expect(est.costUsd.mid).toBe(0);
      // Every request sent is one the simulator answered.
      const calls = callsOf(first);
      expect(sim.stats().callsByModel).toEqual({ "gpt-4o-mini": calls.classify, "gpt-4o": calls.billing! + calls.bugs! });
      expect(calls.billing).toBeGreaterThan(0);
      expect(calls.bugs).toBeGreaterThan(0);

      // A prompt change on `billing`: its items are asked again, `bugs` and `classify` make no call.
      sim.reset();
      const billingChanged = withPrompt(branches, "billing", "Billing and refund fields, as JSON:\n{{item.body}}");
      const second = await runPipeline({ db: t.db, pipeline: billingChanged, providers }, input, { fresh: true });
      expect(second.status).toBe("finished");
      expect(callsOf(second)).toMatchObject({ classify: 0, billing: billingIds.length, bugs: 0 });
      expect(sim.stats().callsByModel).toEqual({ "gpt-4o": billingIds.length });
      const stage = (id: string) => second.stages.find((s) => s.id === id)!;
      expect(stage("bugs").reused).toBe(bugIds.length);
      // Validate takes every bug ticket's verdict from the first run: its input did not change.
      expect(stage("validate").reused).toBeGreaterThanOrEqual(bugIds.length);
      expect(second.items.byStatus).toEqual(first.items.byStatus);
      const rowsAfter = await targetRows(t.db, "ticket_branches");
      for (const id of bugIds) expect(rowsAfter.find((r) => r.key === id)?.data).toEqual(rows.find((r) => r.key === id)?.data);

      // `rerun --stage bugs` after a change to its prompt: only bug tickets are asked again.
      sim.reset();
      const bugsChanged = withPrompt(billingChanged, "bugs", "Product, severity and a summary of this bug:\n{{item.body}}");
      const { run, stages } = await prepareRerun(t.db, bugsChanged, { stage: "bugs" });
      // Only classify is upstream of bugs: billing, on the other branch, runs again and is reused.
      expect(stages.map((s) => [s.id, s.role])).toEqual([["classify", "upstream"], ["billing", "beside"], ["bugs", "target"], ["validate", "downstream"], ["commit", "downstream"]]);
      const rerun = await resumeRun({ db: t.db, pipeline: bugsChanged, providers }, run.id);
      expect(rerun.status).toBe("finished");
      expect(callsOf(rerun)).toMatchObject({ classify: 0, billing: 0, bugs: bugIds.length });
      expect(rerun.stages.find((s) => s.id === "billing")!.reused).toBe(billingIds.length);
      expect(sim.stats().callsByModel).toEqual({ "gpt-4o": bugIds.length });
      expect(rerun.items.byStatus).toEqual(first.items.byStatus);
    }, 300_000);

    it("counts an item where it ended: carried past a gate or a failure by the other branch, else where it stopped", async () => {
      t = await driver.open();
      // left takes even numbers and fails on 4 and 6; right takes multiples of 3. 6 fails on
      // the left but the right carries it on; 4 fails with nowhere else to go; 1, 5, 7, 11 neither.
      const { functionStage, upsertCommit } = stagesFor<{ id: string; n: number }>();
      const tag = functionStage({ id: "tag", kind: "map", codeVersion: "1", run: ({ item }) => ({ even: item.n % 2 === 0, third: item.n % 3 === 0 }) });
      const left = functionStage({
        id: "left", kind: "map", codeVersion: "1", reads: [tag],
        when: ({ outputs }) => outputs.tag.even,
        run: ({ item }) => {
          if (item.n === 4 || item.n === 6) throw new Error(`no left side for ${item.n}`);
          return { side: "left" };
        },
      });
      const right = functionStage({ id: "right", kind: "map", codeVersion: "1", reads: [tag], when: ({ outputs }) => outputs.tag.third, run: () => ({ side: "right" }) });
      const commit = upsertCommit({
        id: "commit", table: "sides", key: "id", codeVersion: "1", reads: [tag, left, right],
        row: ({ itemId, outputs }) => ({ id: itemId, sides: [outputs.left?.side, outputs.right?.side].filter(Boolean).join("+") }),
      });
      const pipeline = definePipeline({ id: "sides", source: { key: "id" }, stages: [tag, left, right, commit] });
      const items = Array.from({ length: 12 }, (_, n) => ({ id: `n${String(n).padStart(2, "0")}`, n }));
      const run = await runPipelineForTest(pipeline, { items, db: t.db });
      expect(run.summary.items.byStatus).toEqual({ committed: 7, failed_terminal: 1, gated_out: 4 });
      const rows = await run.target("sides");
      expect(Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, (v.data as { sides: string }).sides]))).toEqual({
        n00: "left+right", n02: "left", n03: "right", n06: "right", n08: "left", n09: "right", n10: "left",
      });
      const left6 = (await run.statuses("left")).n06;
      expect(left6).toBe("failed_terminal");
      // The console's item list says the same, item by item.
      const page = await itemPage(t.db, run.summary.runId, { limit: 100 }, carriedPairs(recordedReads(planStages(pipeline))));
      const tally: Record<string, number> = {};
      for (const r of page) tally[r.status] = (tally[r.status] ?? 0) + 1;
      expect(tally).toEqual(run.summary.items.byStatus);
      expect(page.find((r) => r.item_id === "n06")).toMatchObject({ status: "committed", stage_id: "commit" });
    }, 120_000);

    it("resumes a run stopped while both branches were running, and ends as an uninterrupted run does", async () => {
      t = await driver.open();
      const providers = providerSet();
      const stop = new AbortController();
      let runId = "";
      const started = runPipeline(
        {
          db: t.db,
          pipeline: branches,
          providers,
          signal: stop.signal,
          options: { chunkSize: 4 },
          events: {
            runStarted: (run) => (runId = run.id),
            // Stopped as soon as a branch has written some of its items: the other is still open.
            progress: (stage, done) => {
              if ((stage.id === "billing" || stage.id === "bugs") && done > 0) stop.abort(new Error("stopped"));
            },
          },
        },
        input,
        { fresh: true },
      );
      await expect(started).rejects.toThrow();
      // Stopped in the middle: a branch has written some items, and the run is not done.
      const billingRows = await byItem(t.db, runId, "billing");
      const bugRows = await byItem(t.db, runId, "bugs");
      expect(Object.keys(billingRows).length + Object.keys(bugRows).length).toBeGreaterThan(0);
      expect(Object.keys(await byItem(t.db, runId, "commit")).length).toBe(0);
      const resumed = await resumeRun({ db: t.db, pipeline: branches, providers }, runId);
      expect(resumed.status).toBe("finished");
      // The same store, from scratch: what an uninterrupted run commits.
      const whole = await runPipeline({ db: t.db, pipeline: branches, providers }, input, { fresh: true });
      expect(resumed.items.byStatus).toEqual(whole.items.byStatus);
      const validateOf = async (id: string) => Object.fromEntries(Object.entries(await byItem(t.db, id, "validate")).map(([k, v]) => [k, v.status]));
      expect(await validateOf(resumed.runId)).toEqual(await validateOf(whole.runId));
    }, 300_000);
  });
}
