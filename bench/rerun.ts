/**
 * Benchmark: rerunning one stage after a prompt change. The demo pipeline on
 * the demo data, providers over HTTP to the simulator (no added latency, so
 * the store's share of the time is as large as it gets). After a full run,
 * the extract prompt changes; `rerun --stage extract` is measured against a
 * full run of the changed pipeline from scratch, in this process and this run.
 */
import { join } from "node:path";
import { rerunPipeline } from "../src/cli/rerun.ts";
import { definePipeline } from "../src/core/define.ts";
import { isLlmStage, type PipelineDef } from "../src/core/types.ts";
import type { ProviderSet } from "../src/engine/context.ts";
import type { RunSummary } from "../src/inspect/summary.ts";
import { costOf, createProvider } from "../src/providers/index.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { memoryDatabase } from "../src/testing/databases.ts";
import pipeline from "../pipelines/ticket-triage.ts";
import { fmt, ratio, row } from "./report.ts";

const DEMO = join(import.meta.dirname, "..", "examples", "data", "tickets.csv");

function changedExtract(p: PipelineDef): PipelineDef {
  return definePipeline({
    ...p,
    stages: p.stages.map((s) => (s.id === "extract" && isLlmStage(s) ? { ...s, prompt: { ...s.prompt, system: "Extract the fields of a support ticket carefully. Use null when the ticket does not state a field." } } : s)),
  });
}

function simProviders(sim: Simulator): ProviderSet {
  const openai = createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, env: {} });
  return { defaultProvider: "openai", get: () => openai, cost: costOf };
}

async function timed<T>(sim: Simulator, fn: () => Promise<T>): Promise<{ value: T; seconds: number; calls: number }> {
  sim.reset();
  const started = performance.now();
  const value = await fn();
  return { value, seconds: (performance.now() - started) / 1000, calls: sim.stats().calls };
}

const cost = (s: RunSummary) => s.costUsd;

export async function benchRerun(): Promise<void> {
  console.log("\n## 4. rerun one stage after a prompt change (demo data, simulator over HTTP)\n");
  const sim = await startSimulator({ port: 0 });
  const providers = simProviders(sim);
  const changed = changedExtract(pipeline);
  const store = await memoryDatabase();
  const scratch = await memoryDatabase();
  try {
    const first = await timed(sim, () => runPipeline({ db: store.db, pipeline, providers }, DEMO));
    row("first full run (original prompts)", `${fmt(first.calls)} calls`, `${first.seconds.toFixed(2)} s, $${cost(first.value).toFixed(4)}`);

    const full = await timed(sim, () => runPipeline({ db: scratch.db, pipeline: changed, providers }, DEMO));
    const stage = await timed(sim, () => rerunPipeline({ db: store.db, pipeline: changed, providers }, { stage: "extract" }));
    const same = await timed(sim, () => rerunPipeline({ db: store.db, pipeline: changed, providers }, { stage: "extract" }));
    const reached = stage.value.summary.stages.find((s) => s.id === "extract")!.processed;

    row("full run from scratch, new extract prompt", `${fmt(full.calls)} calls`, `baseline · ${full.seconds.toFixed(2)} s, $${cost(full.value).toFixed(4)}`);
    row("rerun --stage extract", `${fmt(stage.calls)} calls`, `${ratio(stage.calls, full.calls)} of baseline calls (${fmt(reached)} items reach extract)`);
    row("", `${stage.seconds.toFixed(2)} s`, `${ratio(stage.seconds, full.seconds)} of baseline wall time, $${cost(stage.value.summary).toFixed(4)} (${ratio(cost(stage.value.summary), cost(full.value))} of baseline cost)`);
    row("rerun again, nothing changed", `${fmt(same.calls)} calls`, `${same.seconds.toFixed(2)} s, ${ratio(same.seconds, full.seconds)} of baseline wall time`);
  } finally {
    await store.drop();
    await scratch.drop();
    await sim.close();
  }
}
