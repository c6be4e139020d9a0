import Anthropic from "@anthropic-ai/sdk";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { defaultSimConfig, startSimulator, type Simulator } from "./index.ts";

const schema = {
  type: "object",
  properties: { category: { type: "string", enum: ["billing", "bug", "other"] } },
  required: ["category"],
  additionalProperties: false,
};
const TEXTS = ["charged twice on my invoice", "the app crashes on start", "hello there", "refund my payment", "error when saving"];

let sim: Simulator;
let openai: OpenAI;
let anthropic: Anthropic;

beforeAll(async () => {
  sim = await startSimulator({ seed: 3 });
  openai = new OpenAI({ apiKey: "sk-sim", baseURL: sim.openaiBaseURL, maxRetries: 0 });
  anthropic = new Anthropic({ apiKey: "sk-ant-sim", baseURL: sim.anthropicBaseURL, maxRetries: 0 });
});
afterAll(() => sim.close());
beforeEach(() => {
  sim.configure({ faults: defaultSimConfig.faults, batch: defaultSimConfig.batch });
  sim.reset();
});

function jsonl(n: number, prefix = "item"): string {
  return Array.from({ length: n }, (_, i) =>
    JSON.stringify({
      custom_id: `${prefix}-${i}`,
      method: "POST",
      url: "/v1/chat/completions",
      body: {
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: `${TEXTS[i % TEXTS.length]} #${i}` }],
        response_format: { type: "json_schema", json_schema: { name: "t", schema, strict: true } },
      },
    }),
  ).join("\n");
}

async function openaiBatch(n: number): Promise<OpenAI.Batch> {
  const file = await openai.files.create({ file: await toFile(Buffer.from(jsonl(n)), "requests.jsonl"), purpose: "batch" });
  expect(file.purpose).toBe("batch");
  return openai.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
}

async function pollOpenAI(id: string): Promise<{ batch: OpenAI.Batch; statuses: string[] }> {
  const statuses: string[] = [];
  for (let i = 0; i < 400; i++) {
    const batch = await openai.batches.retrieve(id);
    statuses.push(batch.status);
    if (["completed", "expired", "cancelled", "failed"].includes(batch.status)) return { batch, statuses };
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("batch never ended");
}

async function lines(fileId: string | null | undefined): Promise<Record<string, any>[]> {
  if (!fileId) return [];
  const text = await (await openai.files.content(fileId)).text();
  return text.trim().split("\n").map((l) => JSON.parse(l));
}

function anthropicRequests(n: number) {
  return Array.from({ length: n }, (_, i) => ({
    custom_id: `req_${i}`,
    params: {
      model: "claude-haiku-4-5",
      max_tokens: 256,
      messages: [{ role: "user" as const, content: `${TEXTS[i % TEXTS.length]} #${i}` }],
      tools: [{ name: "label", input_schema: schema as { type: "object" } }],
      tool_choice: { type: "tool" as const, name: "label" },
    },
  }));
}

async function pollAnthropic(id: string): Promise<Anthropic.Messages.MessageBatch> {
  for (let i = 0; i < 400; i++) {
    const batch = await anthropic.messages.batches.retrieve(id);
    if (batch.processing_status === "ended") return batch;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("batch never ended");
}

describe("OpenAI Batch API", () => {
  it("runs a batch end to end: upload, create, poll, read results by custom_id", async () => {
    sim.configure({ batch: { pollsToComplete: 3 } });
    const created = await openaiBatch(20);
    expect(created.status).toBe("validating");
    const { batch, statuses } = await pollOpenAI(created.id);
    expect(statuses).toEqual(["in_progress", "in_progress", "completed"]);
    expect(batch.request_counts).toEqual({ total: 20, completed: 20, failed: 0 });
    expect(batch.error_file_id).toBeNull();
    const out = await lines(batch.output_file_id);
    const ids = out.map((l) => l.custom_id);
    expect(new Set(ids)).toEqual(new Set(Array.from({ length: 20 }, (_, i) => `item-${i}`)));
    expect(ids).not.toEqual([...ids].sort((a, b) => Number(a.split("-")[1]) - Number(b.split("-")[1])));
    const byId = new Map(out.map((l) => [l.custom_id, l]));
    const first = byId.get("item-0")!;
    expect(first.response.status_code).toBe(200);
    expect(first.error).toBeNull();
    expect(JSON.parse(first.response.body.choices[0].message.content)).toEqual({ category: "billing" });
    expect(sim.stats().callsByCustomId["item-0"]).toBe(1);
    expect(sim.stats().batches).toMatchObject({ created: 1, requests: 20, completed: 1 });
    expect(sim.stats().tokens.batchInput).toBe(batch.usage!.input_tokens);
  });

  it("shows progress over time and puts failed requests in the error file", async () => {
    sim.configure({ batch: { processingMs: 300, failureRate: 0.3 } });
    const created = await openaiBatch(40);
    const mid = await openai.batches.retrieve(created.id);
    expect(mid.status).toBe("in_progress");
    const { batch } = await pollOpenAI(created.id);
    expect(batch.status).toBe("completed");
    const counts = batch.request_counts!;
    expect(counts.failed).toBeGreaterThan(0);
    expect(counts.completed + counts.failed).toBe(40);
    const errors = await lines(batch.error_file_id);
    expect(errors).toHaveLength(counts.failed);
    expect(errors[0]!.response.status_code).toBe(500);
    expect(errors[0]!.response.body.error.type).toBe("server_error");
    expect(await lines(batch.output_file_id)).toHaveLength(counts.completed);
    expect(sim.stats().faults.batch_request_error).toBe(counts.failed);
  });

  it("expires a batch: unprocessed requests go to the error file as batch_expired", async () => {
    sim.configure({ batch: { expireBatches: [1], expireFraction: 0.25 } });
    const { batch } = await pollOpenAI((await openaiBatch(8)).id);
    expect(batch.status).toBe("expired");
    expect(batch.expired_at).toBeGreaterThan(0);
    expect(batch.request_counts).toEqual({ total: 8, completed: 2, failed: 0 });
    expect(await lines(batch.output_file_id)).toHaveLength(2);
    const errors = await lines(batch.error_file_id);
    expect(errors).toHaveLength(6);
    expect(errors.every((e) => e.response === null && e.error.code === "batch_expired")).toBe(true);
    // Only the first batch was told to expire.
    expect((await pollOpenAI((await openaiBatch(2)).id)).batch.status).toBe("completed");
  });

  it("cancels a batch through cancelling to cancelled", async () => {
    sim.configure({ batch: { pollsToComplete: 10, cancelMs: 30 } });
    const created = await openaiBatch(10);
    await openai.batches.retrieve(created.id);
    const cancelling = await openai.batches.cancel(created.id);
    expect(cancelling.status).toBe("cancelling");
    const { batch } = await pollOpenAI(created.id);
    expect(batch.status).toBe("cancelled");
    expect(batch.request_counts!.completed).toBe(1);
    const err = await openai.batches.cancel(created.id).catch((e: { status: number }) => e);
    expect((err as { status: number }).status).toBe(409);
  });

  it("fails a batch whose input has duplicate custom_ids", async () => {
    const text = jsonl(2) + "\n" + jsonl(1);
    const file = await openai.files.create({ file: await toFile(Buffer.from(text), "dup.jsonl"), purpose: "batch" });
    const created = await openai.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    const { batch } = await pollOpenAI(created.id);
    expect(batch.status).toBe("failed");
    expect(batch.errors!.data![0]).toMatchObject({ code: "duplicate_custom_id", line: 3 });
  });

  it("delivers results in the same shuffled order for the same seed", async () => {
    const order = async () => (await lines((await pollOpenAI((await openaiBatch(12)).id)).batch.output_file_id)).map((l) => l.custom_id);
    sim.reset();
    const a = await order();
    sim.reset();
    const b = await order();
    expect(b).toEqual(a);
  });
});

describe("Anthropic Message Batches API", () => {
  it("runs a batch end to end: create, retrieve, results()", async () => {
    sim.configure({ batch: { pollsToComplete: 2 } });
    const created = await anthropic.messages.batches.create({ requests: anthropicRequests(10) });
    expect(created.processing_status).toBe("in_progress");
    expect(created.request_counts.processing).toBe(10);
    expect(created.results_url).toBeNull();
    const batch = await pollAnthropic(created.id);
    expect(batch.request_counts).toEqual({ processing: 0, succeeded: 10, errored: 0, canceled: 0, expired: 0 });
    expect(batch.results_url).toBe(`${sim.url}/v1/messages/batches/${created.id}/results`);
    const results = new Map<string, Anthropic.Messages.MessageBatchResult>();
    for await (const line of await anthropic.messages.batches.results(created.id)) results.set(line.custom_id, line.result);
    expect(results.size).toBe(10);
    const r1 = results.get("req_1")!;
    expect(r1.type).toBe("succeeded");
    if (r1.type === "succeeded") {
      expect(r1.message.stop_reason).toBe("tool_use");
      expect(r1.message.content[0]).toMatchObject({ type: "tool_use", name: "label", input: { category: "bug" } });
    }
    expect(sim.stats().batchCalls).toBe(10);
  });

  it("rejects an invalid custom_id with 400 invalid_request_error", async () => {
    const requests = anthropicRequests(2);
    requests[1]!.custom_id = "has spaces!";
    const err = await anthropic.messages.batches.create({ requests }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    const e = err as InstanceType<typeof Anthropic.BadRequestError>;
    expect(e.error).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    expect((e.error as { error: { message: string } }).error.message).toMatch(/requests\.1\.custom_id/);
    const tooLong = anthropicRequests(1);
    tooLong[0]!.custom_id = "x".repeat(65);
    expect((await anthropic.messages.batches.create({ requests: tooLong }).catch((x: { status: number }) => x)) as { status: number }).toMatchObject({ status: 400 });
    expect(sim.stats().batches.created).toBe(0);
  });

  it("rejects duplicate custom_ids with 400", async () => {
    const requests = anthropicRequests(3);
    requests[2]!.custom_id = requests[0]!.custom_id;
    const err = (await anthropic.messages.batches.create({ requests }).catch((e: unknown) => e)) as InstanceType<typeof Anthropic.BadRequestError>;
    expect(err.status).toBe(400);
    expect((err.error as { error: { message: string } }).error.message).toMatch(/[Dd]uplicate custom_id/);
  });

  it("reports errored, expired and canceled results", async () => {
    sim.configure({ batch: { failureRate: 0.5, expireBatches: true, expireFraction: 0.5 } });
    const expired = await pollAnthropic((await anthropic.messages.batches.create({ requests: anthropicRequests(10) })).id);
    const c = expired.request_counts;
    expect(c.expired).toBe(5);
    expect(c.succeeded + c.errored).toBe(5);
    expect(c.errored).toBeGreaterThan(0);
    const types: string[] = [];
    for await (const line of await anthropic.messages.batches.results(expired.id)) {
      types.push(line.result.type);
      if (line.result.type === "errored") expect(line.result.error).toEqual({ type: "error", error: { type: "api_error", message: "Internal server error" } });
    }
    expect(types.filter((t) => t === "expired")).toHaveLength(5);

    sim.configure({ batch: { failureRate: 0, expireBatches: false, pollsToComplete: 4 } });
    const created = await anthropic.messages.batches.create({ requests: anthropicRequests(8) });
    await anthropic.messages.batches.retrieve(created.id);
    const canceling = await anthropic.messages.batches.cancel(created.id);
    expect(canceling.cancel_initiated_at).not.toBeNull();
    const ended = await pollAnthropic(created.id);
    expect(ended.request_counts).toMatchObject({ succeeded: 2, canceled: 6 });
  });
});
