import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimulator, type Simulator } from "../../sim/index.ts";
import type { BatchResult, CompletionRequest } from "../types.ts";
import { AnthropicBatchApi, bodyPieces } from "./batch.ts";
import { createClient } from "./client.ts";
import { toMessageBody } from "./realtime.ts";

let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator();
});
afterAll(async () => {
  await sim?.close();
});

const req = (id: string): CompletionRequest => ({
  customId: id,
  model: "claude-3-5-haiku-latest",
  messages: [{ role: "user", content: `ticket ${id} «${"é".repeat(3)}»` }],
  schema: { name: "s", schema: { type: "object", properties: { a: { type: "string" } }, required: ["a"], additionalProperties: false } },
  params: { maxTokens: 200 },
});

describe("Anthropic batch submission", () => {
  it("writes the create call's body a request at a time, the same JSON the SDK would send", () => {
    const requests = ["a", "b", "c"].map(req);
    expect(JSON.parse([...bodyPieces(requests)].join(""))).toEqual({ requests: requests.map((r) => ({ custom_id: r.customId, params: toMessageBody(r) })) });
    expect(JSON.parse([...bodyPieces([req("only")])].join("")).requests).toHaveLength(1);
  });

  it("sends the body from a temporary file, removed once the batch is created, and reads every answer back", async () => {
    const before = process.env.TMPDIR;
    const dir = mkdtempSync(join(tmpdir(), "sluice-anthropic-batch-test-"));
    process.env.TMPDIR = dir;
    try {
      const api = new AnthropicBatchApi(createClient({ apiKey: "sk-ant-test", baseURL: sim.anthropicBaseURL, timeoutMs: 30_000 }), (s) => s);
      const ids = Array.from({ length: 40 }, (_, i) => `req-${i}`);
      const { batchId } = await api.submit(ids.map(req));
      expect(readdirSync(dir)).toEqual([]);
      let state = await api.poll(batchId);
      for (let i = 0; i < 50 && state.status === "in_progress"; i++) state = await api.poll(batchId);
      expect(state.status).toBe("ended");
      const results: BatchResult[] = [];
      for await (const r of api.results(batchId)) results.push(r);
      expect(results.map((r) => r.customId).sort()).toEqual([...ids].sort());
      expect(results.every((r) => r.ok && JSON.parse(r.result.text).a !== undefined)).toBe(true);
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
