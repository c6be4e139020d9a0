/**
 * Benchmark 2: holding a provider's rate limits. Two simulators with the same
 * limits (600 RPM, 100k TPM, 200 ms latency); 3,000 items each. sluice (engine,
 * store and limiter, on the on-disk store `sluice run` uses) against a naive
 * loop at sluice's concurrency (64 calls in flight) with exponential backoff
 * on 429, through the same official SDK. Both run at once in this process,
 * each against its own simulator.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { definePipeline, defineStage } from "../src/core/define.ts";
import type { JsonSchema } from "../src/core/types.ts";
import { costOf, createProvider } from "../src/providers/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { openDatabase } from "../src/store/index.ts";
import { runPipelineForTest } from "../src/testing/harness.ts";
import { fmt, row } from "./report.ts";

const RPM = 600;
const TPM = 100_000;
const ITEMS = Number(process.env.BENCH_RATE_ITEMS) || 3_000;
const MODEL = "gpt-4o-mini";
/** Calls in flight, for sluice and for the naive loop alike. */
const CONCURRENCY = 64;
const schema: JsonSchema = {
  type: "object", additionalProperties: false, required: ["category", "confidence"],
  properties: { category: { enum: ["billing", "refund", "bug", "how_to", "account", "other"] }, confidence: { type: "number" } },
};
const topics = ["I was charged twice on invoice", "The app crashes when I export", "How do I reset my password", "Please refund order", "Where can I find the API docs"];
const items = Array.from({ length: ITEMS }, (_, i) => ({ id: `r${i}`, text: `${topics[i % topics.length]} #${i}` }));

const simConfig = { limits: { [MODEL]: { rpm: RPM, tpm: TPM } }, latency: { meanMs: 200, jitterMs: 50 } };

function share(sim: Simulator, seconds: number) {
  const s = sim.stats();
  const minutes = seconds / 60;
  const rpm = s.billed / minutes;
  const tpm = (s.tokens.input + s.tokens.output) / minutes;
  const binding = rpm / RPM >= tpm / TPM ? "RPM" : "TPM";
  return { rpm, tpm, binding, shareOfLimit: Math.max(rpm / RPM, tpm / TPM), rejectedShare: s.rejected / s.calls, calls: s.calls, rejected: s.rejected };
}

async function sluiceSide(sim: Simulator) {
  const provider = createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, env: {} });
  const pipeline = definePipeline({
    id: "rate-bench",
    source: { key: "id" },
    stages: [defineStage({ id: "classify", kind: "classify", model: MODEL, prompt: { user: "{{item.text}}" }, output: { name: "Label", schema }, params: { maxTokens: 50 } })],
  });
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-rate-"));
  const db = await openDatabase({ dataDir: join(dir, "pglite") });
  try {
    const started = performance.now();
    const run = await runPipelineForTest(pipeline, { items, db, providers: { defaultProvider: "openai", get: () => provider, cost: costOf }, options: { concurrency: CONCURRENCY } });
    const seconds = (performance.now() - started) / 1000;
    const done = run.summary.items.byStatus.succeeded_unvalidated ?? 0;
    await run.close();
    return { seconds, done };
  } finally {
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function naiveSide(sim: Simulator) {
  const client = new OpenAI({ apiKey: "naive", baseURL: sim.openaiBaseURL, maxRetries: 0 });
  const started = performance.now();
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) {
      for (let attempt = 0; ; attempt++) {
        try {
          await client.chat.completions.create({
            model: MODEL,
            max_tokens: 50,
            messages: [{ role: "user", content: items[i]!.text }],
            response_format: { type: "json_schema", json_schema: { name: "Label", schema, strict: true } },
          });
          done++;
          break;
        } catch (err) {
          if ((err as { status?: number }).status !== 429 || attempt > 12) throw err;
          await new Promise((r) => setTimeout(r, Math.min(30_000, 250 * 2 ** attempt)));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { seconds: (performance.now() - started) / 1000, done };
}

export async function benchRateLimit(): Promise<void> {
  console.log(`\n## 2. rate limits: ${fmt(ITEMS)} items, simulator at ${RPM} RPM / ${fmt(TPM)} TPM, 200 ms latency\n`);
  const [a, b] = await Promise.all([startSimulator({ port: 0, config: simConfig }), startSimulator({ port: 0, config: simConfig })]);
  try {
    const [naive, sluice] = await Promise.all([naiveSide(a), sluiceSide(b)]);
    const n = share(a, naive.seconds);
    const s = share(b, sluice.seconds);
    const line = (label: string, r: ReturnType<typeof share>, seconds: number, done: number) =>
      row(label, `${(r.shareOfLimit * 100).toFixed(1)}% of ${r.binding}`, `429s ${(r.rejectedShare * 100).toFixed(2)}% (${r.rejected}/${r.calls} requests) · ${fmt(r.rpm)} RPM, ${fmt(r.tpm)} TPM · ${done} items in ${seconds.toFixed(0)} s`);
    line(`naive loop: concurrency ${CONCURRENCY} (sluice's), exponential backoff`, n, naive.seconds, naive.done);
    line("sluice", s, sluice.seconds, sluice.done);
    row("sluice throughput vs naive", `${(s.shareOfLimit / n.shareOfLimit).toFixed(2)}x`, "targets: sluice >= 95% of the binding limit, <= 0.5% 429s");
    console.log("  (the simulator's buckets start full, as providers' do: a client that bursts can pass 100% over a short run, paying for it in 429s)");
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}
