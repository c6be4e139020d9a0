import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { defaultSimConfig, startSimulator, type Simulator } from "./index.ts";

const inputSchema = {
  type: "object" as const,
  properties: {
    category: { type: "string", enum: ["billing", "bug", "how_to", "other"] },
    summary: { type: "string", maxLength: 80 },
    confidence: { type: "number" },
  },
  required: ["category", "summary", "confidence"],
};

const forced = (text: string) => ({
  model: "claude-haiku-4-5",
  max_tokens: 512,
  system: "Classify the support ticket.",
  messages: [{ role: "user" as const, content: text }],
  tools: [{ name: "record_ticket", input_schema: inputSchema }],
  tool_choice: { type: "tool" as const, name: "record_ticket" },
});

let sim: Simulator;
let client: Anthropic;

beforeAll(async () => {
  sim = await startSimulator({ seed: 7 });
  client = new Anthropic({ apiKey: "sk-ant-sim", baseURL: sim.anthropicBaseURL, maxRetries: 0 });
});
afterAll(() => sim.close());
beforeEach(() => {
  sim.configure({ limits: {}, faults: defaultSimConfig.faults });
  sim.reset();
});

describe("Anthropic messages", () => {
  it("answers a forced tool with a tool_use block whose input is the object", async () => {
    const { data, response } = await client.messages.create(forced("The app crashes with an error when I upload")).withResponse();
    expect(data.stop_reason).toBe("tool_use");
    expect(data.content).toHaveLength(1);
    const block = data.content[0]!;
    expect(block.type).toBe("tool_use");
    if (block.type !== "tool_use") return;
    expect(block.name).toBe("record_ticket");
    expect(block.input).toMatchObject({ category: "bug" });
    expect(typeof (block.input as { summary: unknown }).summary).toBe("string");
    expect(data.usage.input_tokens).toBeGreaterThan(0);
    expect(data.usage.output_tokens).toBeGreaterThan(0);
    expect(response.headers.get("request-id")).toMatch(/^req_/);
  });

  it("answers plain text with end_turn, and is deterministic", async () => {
    const req = { model: "claude-haiku-4-5", max_tokens: 100, messages: [{ role: "user" as const, content: "Please summarise my refund request" }] };
    const a = await client.messages.create(req);
    const b = await client.messages.create(req);
    expect(a.stop_reason).toBe("end_turn");
    expect(a.content[0]).toMatchObject({ type: "text", text: "Please summarise my refund request" });
    expect(b.content).toEqual(a.content);
    expect(b.usage).toEqual(a.usage);
  });

  it("counts input tokens exactly as the messages call bills them", async () => {
    const m = await client.messages.create(forced("Where can I find the invoice settings?"));
    const { max_tokens: _omit, ...countable } = forced("Where can I find the invoice settings?");
    const counted = await client.messages.countTokens(countable);
    expect(counted.input_tokens).toBe(m.usage.input_tokens);
  });

  it("stops at max_tokens with a partial tool input", async () => {
    const m = await client.messages.create({ ...forced("I was charged twice"), max_tokens: 4 });
    expect(m.stop_reason).toBe("max_tokens");
    expect(m.usage.output_tokens).toBe(4);
  });

  it("accepts Authorization: Bearer as well as x-api-key, and any anthropic-version", async () => {
    const body = JSON.stringify(forced("hello"));
    const viaBearer = await fetch(`${sim.url}/v1/messages`, {
      method: "POST",
      headers: { authorization: "Bearer token", "anthropic-version": "2023-06-01", "content-type": "application/json" },
      body,
    });
    expect(viaBearer.status).toBe(200);
    const viaKey = await fetch(`${sim.url}/v1/messages`, { method: "POST", headers: { "x-api-key": "k", "anthropic-version": "1999-01-01" }, body });
    expect(viaKey.status).toBe(200);
    const none = await fetch(`${sim.url}/v1/messages`, { method: "POST", body });
    expect(none.status).toBe(401);
    expect(await none.json()).toEqual({ type: "error", error: { type: "authentication_error", message: "x-api-key header is required" } });
  });

  it("rejects a body without max_tokens with invalid_request_error", async () => {
    const { max_tokens: _omit, ...rest } = forced("x");
    const err = await client.messages.create(rest as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as InstanceType<typeof Anthropic.BadRequestError>).error).toEqual({
      type: "error",
      error: { type: "invalid_request_error", message: "max_tokens: Field required" },
    });
  });
});

describe("Anthropic errors and limits", () => {
  it("answers 529 overloaded_error with retry-after", async () => {
    sim.configure({ faults: { overloaded: 1 } });
    const err = await client.messages.create(forced("hello")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    const e = err as InstanceType<typeof Anthropic.APIError>;
    expect(e.status).toBe(529);
    expect(e.error).toEqual({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } });
    expect(e.headers?.get("retry-after")).toBe("1");
    expect(sim.stats().faults.overloaded).toBe(1);
    expect(sim.stats().billed).toBe(0);
  });

  it("answers 429 rate_limit_error from the RPM bucket with anthropic-ratelimit headers", async () => {
    sim.configure({ limits: { "claude-haiku-4-5": { rpm: 2, itpm: 50_000, otpm: 10_000 } } });
    const ok = await client.messages.create(forced("a")).withResponse();
    const h = ok.response.headers;
    expect(h.get("anthropic-ratelimit-requests-limit")).toBe("2");
    expect(h.get("anthropic-ratelimit-requests-remaining")).toBe("1");
    expect(Date.parse(h.get("anthropic-ratelimit-requests-reset")!)).toBeGreaterThan(Date.now());
    expect(Number(h.get("anthropic-ratelimit-input-tokens-remaining"))).toBe(50_000 - ok.data.usage.input_tokens);
    expect(h.get("anthropic-ratelimit-output-tokens-limit")).toBe("10000");
    await client.messages.create(forced("a"));
    const err = await client.messages.create(forced("a")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    const e = err as InstanceType<typeof Anthropic.RateLimitError>;
    expect((e.error as { error: { type: string } }).error.type).toBe("rate_limit_error");
    expect(Number(e.headers?.get("retry-after"))).toBeGreaterThanOrEqual(29);
    expect(sim.stats().rejected).toBe(1);
  });

  it("refuses with stop_reason refusal", async () => {
    sim.configure({ faults: { refusal: 1 } });
    const m = await client.messages.create(forced("anything"));
    expect(m.stop_reason).toBe("refusal");
    expect(m.content.some((b) => b.type === "tool_use")).toBe(false);
  });

  it("sends a schema-invalid tool input for a malformed-JSON fault", async () => {
    sim.configure({ faults: { malformedJson: 1 } });
    const m = await client.messages.create(forced("charged twice"));
    const block = m.content[0]!;
    expect(block.type).toBe("tool_use");
    if (block.type === "tool_use") expect(block.input).not.toHaveProperty("category");
  });
});
