import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeterministicError, TransientError } from "../../core/errors.ts";
import { startSimulator, type Simulator } from "../../sim/index.ts";
import type { BatchResult, CompletionRequest } from "../types.ts";
import { OpenAIBatchApi, toBatchJsonl } from "./batch.ts";

/**
 * A batch that fails validation has no output file. sluice never uploads one
 * (it checks first), so the file is built by hand here to see that every
 * request still gets a result, and that only the named line is deterministic.
 */
let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator();
});
afterAll(async () => {
  await sim?.close();
});

const req = (id: string): CompletionRequest => ({
  customId: id,
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: `ticket ${id}` }],
  schema: { name: "s", schema: { type: "object", properties: { a: { type: "string" } }, required: ["a"], additionalProperties: false } },
  params: {},
});

describe("OpenAI batch that failed validation", () => {
  it("gives a DeterministicError to the line named as invalid and a TransientError to the rest", async () => {
    const client = new OpenAI({ apiKey: "sk-test", baseURL: sim.openaiBaseURL, maxRetries: 0 });
    const lines = toBatchJsonl([req("a"), req("b"), req("c")]).trim().split("\n");
    const bad = JSON.parse(lines[1]!) as { url: string };
    bad.url = "/v1/embeddings";
    lines[1] = JSON.stringify(bad);
    const file = await client.files.create({ file: await toFile(Buffer.from(lines.join("\n") + "\n"), "in.jsonl"), purpose: "batch" });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });

    const api = new OpenAIBatchApi(client, (s) => s);
    let state = await api.poll(batch.id);
    for (let i = 0; i < 50 && state.status === "in_progress"; i++) state = await api.poll(batch.id);
    expect(state.status).toBe("failed");
    const results: BatchResult[] = [];
    for await (const r of api.results(batch.id)) results.push(r);
    const byId = new Map(results.map((r) => [r.customId, r]));
    expect([...byId.keys()].sort()).toEqual(["a", "b", "c"]);
    const errorOf = (id: string) => {
      const r = byId.get(id)!;
      return r.ok ? undefined : r.error;
    };
    expect(errorOf("b")).toBeInstanceOf(DeterministicError);
    expect(errorOf("b")!.message).toMatch(/line 2.*endpoint/);
    expect(errorOf("a")).toBeInstanceOf(TransientError);
    expect(errorOf("c")).toBeInstanceOf(TransientError);
  });
});
