/**
 * One OpenAI batch of demo-sized requests, through the official SDK to the
 * simulator in the same process: submitted, polled to its end, every result
 * read. `disk` is how sluice sends it (`OpenAIBatchApi`: the JSONL written to
 * a temporary file and uploaded from disk, results read as a stream); `memory`
 * is the batch built as one string and uploaded from a Buffer, its results
 * read whole (how sluice did it before). Prints the RSS the batch added to the
 * process, the batch's size and the CPU time it took.
 *
 * Usage: node --expose-gc --import tsx bench/batch-child.ts <disk|memory> <requests>
 */
import { toFile } from "openai";
import { batchLines, OpenAIBatchApi, toBatchJsonl } from "../src/providers/openai/batch.ts";
import { createClient } from "../src/providers/openai/client.ts";
import type { CompletionRequest } from "../src/providers/types.ts";
import { startSimulator } from "../src/sim/index.ts";

const [mode, count] = [process.argv[2], Number(process.argv[3])];
if ((mode !== "disk" && mode !== "memory") || !(count > 0)) throw new Error("usage: batch-child.ts <disk|memory> <requests>");

const sim = await startSimulator();
const client = createClient({ apiKey: "sk-sim", baseURL: sim.openaiBaseURL, timeoutMs: 600_000 });
// About the size of the demo's extract requests (4.3 MB for its 2,582).
const words = "The customer writes about a billing problem with their invoice and a refund they expected last week. ";
const requests: CompletionRequest[] = Array.from({ length: count }, (_, i) => ({
  customId: `item-${i}`,
  model: "gpt-4o",
  system: `Extract the fields of this support ticket. ${words.repeat(3)}`,
  messages: [{ role: "user", content: `Ticket T-${i}: ${words.repeat(10)}` }],
  schema: { name: "extract", schema: { type: "object", properties: { product: { type: "string" }, amount: { type: "number" }, summary: { type: "string" } }, required: ["product", "amount", "summary"], additionalProperties: false } },
  params: { maxTokens: 400 },
}));
let bytes = 0;
for (const line of batchLines(requests)) bytes += Buffer.byteLength(line);
// The simulator and the SDK loaded and warm: what follows is the batch's own cost.
const warm = new OpenAIBatchApi(client, (s) => s);
await readAll(warm, (await warm.submit(requests.slice(0, 2))).batchId);
sim.reset();
// Run with --expose-gc: the heap starts the batch collected, so the peak is the batch's.
(globalThis as { gc?: () => void }).gc?.();
const before = process.resourceUsage();
const rssBefore = process.memoryUsage().rss;
// The process's peak may predate the batch (building the requests): sample too.
let sampled = rssBefore;
const sampler = setInterval(() => (sampled = Math.max(sampled, process.memoryUsage().rss)), 10);

let results = 0;
if (mode === "disk") {
  const { batchId } = await warm.submit(requests);
  results = await readAll(warm, batchId);
} else {
  const file = await client.files.create({ file: await toFile(Buffer.from(toBatchJsonl(requests), "utf8"), "batch.jsonl"), purpose: "batch" });
  let batch = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
  while (batch.status !== "completed") batch = await client.batches.retrieve(batch.id);
  const text = await (await client.files.content(batch.output_file_id!)).text();
  results = text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as unknown).length;
}
const after = process.resourceUsage();
clearInterval(sampler);
const peak = Math.max(sampled, after.maxRSS > before.maxRSS ? after.maxRSS * 1024 : 0);
await sim.close();
if (results !== count) throw new Error(`${results} results for ${count} requests`);
console.log(JSON.stringify({
  bytes,
  addedRssMb: (peak - rssBefore) / 1048576,
  cpuS: (after.userCPUTime + after.systemCPUTime - before.userCPUTime - before.systemCPUTime) / 1e6,
}));

async function readAll(api: OpenAIBatchApi, batchId: string): Promise<number> {
  while ((await api.poll(batchId)).status === "in_progress");
  let n = 0;
  for await (const r of api.results(batchId)) if (r.ok) n++;
  return n;
}
