import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimulator, type Simulator } from "../sim/index.ts";
import { createProvider, type VendorName } from "./index.ts";
import { completionFromRaw, withAnswerTap, type RawAnswer } from "./transport.ts";
import type { CompletionRequest } from "./types.ts";

/**
 * The answer tap sees each realtime answer at the HTTP boundary, before the
 * SDK hands it back, and what it saw parses to the same completion the
 * provider returns. Through the official SDKs, over real HTTP.
 */
let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ seed: 3 });
});
afterAll(async () => {
  await sim?.close();
});

const request: CompletionRequest = {
  customId: "t-1",
  model: "gpt-4o-mini",
  system: "Triage the support ticket.",
  messages: [{ role: "user", content: "I was charged twice, please refund me." }],
  schema: {
    name: "triage",
    schema: { type: "object", properties: { category: { type: "string", enum: ["billing", "bug", "other"] } }, required: ["category"], additionalProperties: false },
  },
  params: { maxTokens: 50 },
};

describe.each(["openai", "anthropic"] as VendorName[])("answer tap: %s", (vendor) => {
  it("receives the raw answer before the call returns, and it parses to the same completion", async () => {
    const provider = createProvider({ provider: vendor, baseURL: vendor === "openai" ? sim.openaiBaseURL : sim.anthropicBaseURL, apiKey: "sk-test-tap-0001", env: {} });
    const seen: RawAnswer[] = [];
    let seenBeforeReturn = -1;
    const result = await withAnswerTap(
      (raw) => seen.push(raw),
      async () => {
        const r = await provider.complete(request);
        seenBeforeReturn = seen.length;
        return r;
      },
    );
    expect(seenBeforeReturn).toBe(1);
    expect(seen[0]!.path).toMatch(vendor === "openai" ? /\/chat\/completions$/ : /\/messages$/);
    const { requestId: _id, ...parsed } = result;
    expect(completionFromRaw(seen[0]!)).toEqual(parsed);
    // Outside a tap, and for failures, nothing is seen.
    await provider.complete(request);
    expect(seen).toHaveLength(1);
  });
});

describe("answer tap: an encoded body", () => {
  it("is decoded before the tap sees it", async () => {
    const body = JSON.stringify({ id: "c1", object: "chat.completion", created: 0, model: "m", choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", content: '{"category":"bug"}', refusal: null } }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } });
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
      res.end(gzipSync(body));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const provider = createProvider({ provider: "openai", baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "sk-test-tap-0002", env: {} });
      const seen: RawAnswer[] = [];
      const result = await withAnswerTap((raw) => seen.push(raw), () => provider.complete(request));
      expect(result.text).toBe('{"category":"bug"}');
      expect(seen.map((s) => s.body)).toEqual([body]);
    } finally {
      server.close();
    }
  });
});
