/**
 * Benchmark: what the demo costs, known before it is paid. A seeded sample
 * of 200 tickets is run for real, then `estimate` prices the whole demo, and
 * the full run is measured against it (providers over HTTP to the
 * simulator, which bills like the real price table). The baseline for the
 * run's cost is the naive plan, priced from token counts and the price
 * table without paying for it: every ticket sent to every model stage of the
 * pipeline, on its most expensive model, at the realtime price, with no
 * filter, gate, reuse or batch discount.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readItems, writeSample } from "../src/cli/estimate.ts";
import { isLlmStage, type LlmStage, type PipelineDef } from "../src/core/types.ts";
import type { ProviderSet } from "../src/engine/context.ts";
import { buildRequest, customIdFor } from "../src/engine/llm-call.ts";
import { planStages } from "../src/engine/plan.ts";
import { estimateCost } from "../src/inspect/estimate.ts";
import { estimateInputTokens } from "../src/providers/limits/estimate.ts";
import { costOf, createProvider, priceOf } from "../src/providers/index.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { startSimulator } from "../src/sim/index.ts";
import { answerStats } from "../src/store/spend.ts";
import type { Database } from "../src/store/database.ts";
import { memoryDatabase } from "../src/testing/databases.ts";
import pipeline from "../pipelines/ticket-triage.ts";
import { writeMessyCsv } from "../test/fixtures/messy.ts";
import { fmt, ratio, row } from "./report.ts";

const DEMO = join(import.meta.dirname, "..", "examples", "data", "tickets.csv");
const SAMPLE = 200;

export async function benchCost(): Promise<void> {
  console.log("\n## 6. cost: the estimate against the run, and the run against the naive plan (demo data, simulator over HTTP)\n");
  const sim = await startSimulator({ port: 0 });
  const openai = createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, env: {} });
  const providers: ProviderSet = { defaultProvider: "openai", get: () => openai, cost: costOf, endpointOf: () => "openai@simulator" };
  const store = await memoryDatabase();
  const options = { batchPollMs: 100, batchPollMaxMs: 500 };
  try {
    const { items } = await readItems(DEMO, pipeline);
    const sample = await writeSample({ SLUICE_DATA_DIR: join(mkdtempSync(join(tmpdir(), "sluice-bench-cost-")), "pglite") }, pipeline, DEMO, items, SAMPLE, "bench");
    const sampled = await runPipeline({ db: store.db, pipeline, providers, options }, sample);
    const est = await estimateCost({ db: store.db, pipeline, providers, options }, { source: DEMO, items });
    const run = await runPipeline({ db: store.db, pipeline, providers, options }, DEMO);
    const actual = sampled.costUsd + run.costUsd;
    const inRange = run.costUsd >= est.costUsd.low && run.costUsd <= est.costUsd.high;
    row(`estimate after a ${SAMPLE}-ticket sample run`, `$${est.costUsd.mid.toFixed(4)}`, `${ratio(est.costUsd.mid, run.costUsd)} of the full run's $${run.costUsd.toFixed(4)} (range $${est.costUsd.low.toFixed(4)}–$${est.costUsd.high.toFixed(4)}, ${inRange ? "inside" : "OUTSIDE"})`);
    row("", `${(Math.abs(est.costUsd.mid - run.costUsd) / run.costUsd * 100).toFixed(1)}% off`, `range width ${ratio(est.costUsd.high - est.costUsd.low, run.costUsd)} of the run's cost`);
    // The messy fixture (seven tickets reach classify), estimated with the demo's run as history, then run.
    const messy = await writeMessyCsv(mkdtempSync(join(tmpdir(), "sluice-bench-messy-")));
    const messyItems = await readItems(messy.path, pipeline);
    const messyEst = await estimateCost({ db: store.db, pipeline, providers, options }, { source: messy.path, items: messyItems.items });
    const messyRun = await runPipeline({ db: store.db, pipeline, providers, options }, messy.path);
    const messyIn = messyRun.costUsd >= messyEst.costUsd.low && messyRun.costUsd <= messyEst.costUsd.high;
    row("estimate of the messy fixture after the demo", `$${messyEst.costUsd.mid.toFixed(4)}`, `${ratio(messyEst.costUsd.mid, messyRun.costUsd)} of its run's $${messyRun.costUsd.toFixed(4)} (range $${messyEst.costUsd.low.toFixed(4)}–$${messyEst.costUsd.high.toFixed(4)}, ${messyIn ? "inside" : "OUTSIDE"})`);
    row("", `${(Math.abs(messyEst.costUsd.mid - messyRun.costUsd) / messyRun.costUsd * 100).toFixed(1)}% off`, `range width ${ratio(messyEst.costUsd.high - messyEst.costUsd.low, messyRun.costUsd)} of the run's cost`);
    const naive = await naivePlan(store.db, pipeline, items);
    row("demo, sample and full run together", `$${actual.toFixed(4)}`, `${ratio(actual, naive.usd)} of the naive plan: ${fmt(naive.calls)} realtime calls to ${naive.model}, $${naive.usd.toFixed(4)}`);
  } finally {
    await store.drop();
    await sim.close();
  }
}

/**
 * Every item to every model stage on the pipeline's most expensive model,
 * realtime: input tokens counted on each request, output tokens at the mean
 * each stage's answers had in the store (what a bigger model would write is
 * not known; the same answers are assumed).
 */
async function naivePlan(db: Database, p: PipelineDef, items: { itemId: string; item: unknown }[]): Promise<{ usd: number; calls: number; model: string }> {
  const plan = planStages(p);
  const llm = p.stages.filter(isLlmStage) as LlmStage[];
  const unit = (m: string) => (priceOf(m)?.input ?? 0) + (priceOf(m)?.output ?? 0);
  const model = llm.map((s) => s.model).sort((a, b) => unit(b) - unit(a))[0]!;
  let usd = 0;
  for (const stage of llm) {
    const at = plan.find((s) => s.id === stage.id)!;
    const out = (await answerStats(db, { pipeline: p.id, stageId: stage.id, model: stage.model, limit: 5000 })).mean_output;
    let input = 0;
    for (const i of items) input += estimateInputTokens(buildRequest({ ...stage, model }, { itemId: i.itemId, item: i.item as never, outputs: {} }, customIdFor(at, i.itemId)));
    usd += costOf(model, { inputTokens: input, outputTokens: out * items.length }, "realtime");
  }
  return { usd, calls: llm.length * items.length, model };
}
