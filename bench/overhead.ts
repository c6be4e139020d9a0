/**
 * Benchmark 3: what sluice costs on top of the provider calls. The demo
 * pipeline through sluice (on-disk store, queue, reuse checks, persistence) against a
 * bare loop making the same SDK calls to the same simulator with the same
 * concurrency (calls in flight per stage) and no persistence, in the same run.
 */
import OpenAI from "openai";
import pLimit from "p-limit";
import { isLlmStage, type PipelineDef, type StageDef, type StageInput } from "../src/core/types.ts";
import { buildRequest, checkCompletion } from "../src/engine/llm-call.ts";
import { costOf, createProvider } from "../src/providers/index.ts";
import { startSimulator } from "../src/sim/index.ts";
import { readSource } from "../src/sources/index.ts";
import { openDatabase } from "../src/store/index.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import demo from "../pipelines/ticket-triage.ts";
import { fmt, ratio, row } from "./report.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const DEMO = join(import.meta.dirname, "..", "examples", "data", "tickets.csv");
const CONCURRENCY = 16;
const LATENCY_MS = 100;
// Realtime for both sides: the bare loop makes realtime calls.
const pipeline: PipelineDef = { ...demo, stages: demo.stages.map((s: StageDef) => (isLlmStage(s) ? { ...s, mode: "realtime" as const } : s)) };

async function bareLoop(baseURL: string) {
  const client = new OpenAI({ apiKey: "bare", baseURL, maxRetries: 0 });
  // The same limit as sluice's: CONCURRENCY calls in flight per stage, every
  // item moving on to the next stage as soon as it is through one.
  const limits = new Map(pipeline.stages.map((s) => [s.id, pLimit(CONCURRENCY)]));
  const started = performance.now();
  let rows = 0;
  const work: Promise<void>[] = [];
  for await (const record of readSource(DEMO, pipeline.source)) {
    rows++;
    if (record.kind !== "item") continue;
    work.push(
      (async () => {
        const input: StageInput = { itemId: record.itemId, item: record.item as never, outputs: {} };
        for (const stage of pipeline.stages) {
          if (stage.when && !stage.when(input)) return;
          let out: unknown;
          if (isLlmStage(stage)) {
            const req = buildRequest(stage, input, record.itemId);
            const res = await limits.get(stage.id)!(() => client.chat.completions.create({
              model: req.model,
              messages: [...(req.system ? [{ role: "system" as const, content: req.system }] : []), ...req.messages],
              max_tokens: req.params.maxTokens,
              temperature: req.params.temperature,
              response_format: { type: "json_schema", json_schema: { name: req.schema.name, schema: req.schema.schema, strict: true } },
            }));
            const text = res.choices[0]?.message.content ?? "";
            const checked = checkCompletion(stage, input, { text, finishReason: "stop", usage: { inputTokens: 0, outputTokens: 0 }, model: req.model });
            if (!checked.ok) return;
            out = checked.value;
          } else if (stage.kind === "commit") out = stage.row(input);
          else out = await stage.run(input);
          input.outputs[stage.id] = out;
          if (stage.kind === "filter" && (out as { keep: boolean }).keep === false) return;
          if (stage.kind === "validate" && (out as { status: string }).status !== "valid") return;
        }
      })(),
    );
  }
  await Promise.all(work);
  return { rows, seconds: (performance.now() - started) / 1000 };
}

async function sluiceRun(baseURL: string) {
  // The on-disk store `sluice run` uses, not an in-memory one.
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-overhead-"));
  const db = await openDatabase({ dataDir: join(dir, "pglite") });
  const provider = createProvider({ provider: "openai", baseURL, env: {} });
  try {
    const started = performance.now();
    const summary = await runPipeline({ db, pipeline, providers: { defaultProvider: "openai", get: () => provider, cost: costOf }, options: { concurrency: CONCURRENCY } }, DEMO, { fresh: true });
    return { rows: summary.items.total, seconds: (performance.now() - started) / 1000 };
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchOverhead(): Promise<void> {
  console.log(`\n## 3. overhead: demo pipeline, realtime calls to the simulator (${LATENCY_MS} ms latency), ${CONCURRENCY} calls in flight per stage\n`);
  const sim = await startSimulator({ port: 0, config: { latency: { meanMs: LATENCY_MS, jitterMs: 20 } } });
  try {
    const bare = await bareLoop(sim.openaiBaseURL);
    const base = bare.rows / bare.seconds;
    row("bare loop: same SDK calls, no persistence", `${fmt(base)} items/s`, `baseline (${bare.rows} rows in ${bare.seconds.toFixed(1)} s)`);
    sim.reset();
    const s = await sluiceRun(sim.openaiBaseURL);
    const rate = s.rows / s.seconds;
    row("sluice local runner on PGlite", `${fmt(rate)} items/s`, `${ratio(rate, base)} of bare loop (target >= 0.80) · ${s.rows} rows in ${s.seconds.toFixed(1)} s`);
  } finally {
    await sim.close();
  }
}
