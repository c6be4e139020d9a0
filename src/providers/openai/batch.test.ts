import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeterministicError, TransientError } from "../../core/errors.ts";
import { startSimulator, type Simulator } from "../../sim/index.ts";
import type { BatchResult, CompletionRequest } from "../types.ts";
import { OpenAIBatchApi, toBatchJsonl } from "./batch.ts";
import { createClient } from "./client.ts";

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

describe("OpenAI batch submission", () => {
  it("uploads the requests from a temporary file, removed once the batch is created, and reads every answer back", async () => {
    const before = process.env.TMPDIR;
    const dir = mkdtempSync(join(tmpdir(), "sluice-openai-batch-test-"));
    process.env.TMPDIR = dir;
    try {
      // The client sluice uses: its fetch sends a body from disk without keeping a copy.
      const api = new OpenAIBatchApi(createClient({ apiKey: "sk-test", baseURL: sim.openaiBaseURL, timeoutMs: 30_000 }), (s) => s);
      const ids = Array.from({ length: 40 }, (_, i) => `req-${i}`);
      const { batchId } = await api.submit(ids.map(req), { tag: "sub_test" });
      expect(readdirSync(dir)).toEqual([]);
      let state = await api.poll(batchId);
      for (let i = 0; i < 50 && state.status === "in_progress"; i++) state = await api.poll(batchId);
      expect(state.status).toBe("ended");
      const results: BatchResult[] = [];
      for await (const r of api.results(batchId)) results.push(r);
      expect(results.map((r) => r.customId).sort()).toEqual([...ids].sort());
      expect(results.every((r) => r.ok && JSON.parse(r.result.text).a !== undefined)).toBe(true);
      expect(await api.findSubmitted("sub_test", { since: new Date(Date.now() - 60_000) })).toBe(batchId);
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
