import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { defaultSimConfig, startSimulator, type Simulator } from "./index.ts";

const schema = {
  type: "object",
  properties: {
    category: { type: "string", enum: ["billing", "bug", "how_to", "other"] },
    confidence: { type: "number", minimum: 0, maximum: 1 },
  },
  required: ["category", "confidence"],
  additionalProperties: false,
};

const ticket = (text: string) => ({
  model: "gpt-4o-mini",
  messages: [
    { role: "system" as const, content: "Classify the support ticket." },
    { role: "user" as const, content: text },
  ],
  response_format: { type: "json_schema" as const, json_schema: { name: "ticket", schema, strict: true } },
});

let sim: Simulator;
let client: OpenAI;

beforeAll(async () => {
  sim = await startSimulator();
  client = new OpenAI({ apiKey: "sk-sim", baseURL: sim.openaiBaseURL, maxRetries: 0 });
});
afterAll(() => sim.close());
beforeEach(() => {
  sim.configure({ limits: {}, faults: defaultSimConfig.faults });
  sim.reset();
});

describe("OpenAI chat completions", () => {
  it("answers a json_schema request with schema-valid JSON, usage and a request id", async () => {
    const { data, response } = await client.chat.completions.create(ticket("I was charged twice on my invoice")).withResponse();
    const choice = data.choices[0]!;
    expect(choice.finish_reason).toBe("stop");
    const parsed = JSON.parse(choice.message.content!);
    expect(parsed.category).toBe("billing");
    expect(parsed.confidence).toBeGreaterThan(0);
    expect(data.usage!.total_tokens).toBe(data.usage!.prompt_tokens + data.usage!.completion_tokens);
    expect(data.usage!.completion_tokens).toBeGreaterThan(0);
    expect(response.headers.get("x-request-id")).toMatch(/^req_/);
  });

  it("gives the same content and token counts to the same request", async () => {
    const a = await client.chat.completions.create(ticket("The app crashes with an error on login"));
    const b = await client.chat.completions.create(ticket("The app crashes with an error on login"));
    expect(b.choices[0]!.message.content).toBe(a.choices[0]!.message.content);
    expect(b.usage).toEqual(a.usage);
  });

  it("answers plain text without a response_format", async () => {
    const r = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Say hello to the team" }] });
    expect(r.choices[0]!.message.content).toBe("Say hello to the team");
  });

  it("cuts an answer at max_completion_tokens with finish_reason length", async () => {
    const r = await client.chat.completions.create({ ...ticket("I was charged twice"), max_completion_tokens: 3 });
    expect(r.choices[0]!.finish_reason).toBe("length");
    expect(r.usage!.completion_tokens).toBe(3);
    expect(() => JSON.parse(r.choices[0]!.message.content!)).toThrow();
  });

  it("rejects a request without messages with OpenAI's 400 error body", async () => {
    const err = await client.chat.completions.create({ model: "gpt-4o-mini" } as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.status).toBe(400);
    expect(e.error).toMatchObject({ type: "invalid_request_error", param: "messages", code: "missing_required_parameter" });
  });

  it("answers 401 without an API key", async () => {
    const res = await fetch(`${sim.openaiBaseURL}/chat/completions`, { method: "POST", body: JSON.stringify(ticket("x")) });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
  });
});

describe("OpenAI rate limits", () => {
  it("rejects past the RPM bucket with 429, retry-after and rate-limit headers", async () => {
    sim.configure({ limits: { "gpt-4o-mini": { rpm: 3, tpm: 100_000 } } });
    const first = await client.chat.completions.create(ticket("hello")).withResponse();
    expect(first.response.headers.get("x-ratelimit-limit-requests")).toBe("3");
    expect(first.response.headers.get("x-ratelimit-remaining-requests")).toBe("2");
    expect(first.response.headers.get("x-ratelimit-limit-tokens")).toBe("100000");
    expect(first.response.headers.get("x-ratelimit-reset-requests")).toMatch(/^\d+(\.\d+)?(ms|s)$/);
    await client.chat.completions.create(ticket("hello"));
    await client.chat.completions.create(ticket("hello"));
    const err = await client.chat.completions.create(ticket("hello")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.status).toBe(429);
    expect(e.error).toMatchObject({ type: "requests", code: "rate_limit_exceeded" });
    // 3 RPM refills one request every 20 s.
    expect(Number(e.headers?.get("retry-after"))).toBeGreaterThanOrEqual(19);
    expect(Number(e.headers?.get("retry-after-ms"))).toBeGreaterThan(18_000);
    expect(e.headers?.get("x-ratelimit-remaining-requests")).toBe("0");
    const stats = sim.stats();
    expect(stats.rejected).toBe(1);
    expect(stats.billed).toBe(3);
    expect(stats.rejectedByModel["gpt-4o-mini"]).toBe(1);
  });

  it("charges the TPM bucket with the answer's real tokens", async () => {
    const probe = await client.chat.completions.create(ticket("tokens"));
    const cost = probe.usage!.total_tokens;
    sim.configure({ limits: { "*": { tpm: cost * 2 + 1 } } });
    await client.chat.completions.create(ticket("tokens"));
    const second = await client.chat.completions.create(ticket("tokens")).withResponse();
    expect(Number(second.response.headers.get("x-ratelimit-remaining-tokens"))).toBeLessThanOrEqual(2);
    const err = await client.chat.completions.create(ticket("tokens")).catch((e: unknown) => e);
    expect((err as { status?: number }).status).toBe(429);
    expect((err as { error?: { type?: string } }).error?.type).toBe("tokens");
  });
});

describe("OpenAI injected faults", () => {
  it("answers 500 with a server_error body, and a retry of the same request draws afresh", async () => {
    sim.configure({ faults: { serverError: 0.5 } });
    const outcomes: number[] = [];
    for (let i = 0; i < 12; i++) {
      const status = await client.chat.completions.create(ticket("retry me")).then(
        () => 200,
        (e: { status: number; error: { type: string } }) => {
          expect(e.error.type).toBe("server_error");
          return e.status;
        },
      );
      outcomes.push(status);
    }
    expect(outcomes).toContain(500);
    expect(outcomes).toContain(200);
    // The same seed replays the same sequence of attempts.
    sim.reset();
    const again: number[] = [];
    for (let i = 0; i < 12; i++) again.push(await client.chat.completions.create(ticket("retry me")).then(() => 200, (e: { status: number }) => e.status));
    expect(again).toEqual(outcomes);
    expect(sim.stats().faults.server_error).toBe(outcomes.filter((s) => s === 500).length);
  });

  it("sends a refusal in message.refusal", async () => {
    sim.configure({ faults: { refusal: 1 } });
    const r = await client.chat.completions.create(ticket("anything"));
    expect(r.choices[0]!.message.refusal).toMatch(/can't help/);
    expect(r.choices[0]!.message.content).toBeNull();
  });

  it("sends malformed JSON, truncated JSON and wrong-but-valid answers as 200s", async () => {
    const honest = JSON.parse((await client.chat.completions.create(ticket("charged twice on my invoice"))).choices[0]!.message.content!);
    sim.configure({ faults: { malformedJson: 1 } });
    const bad = await client.chat.completions.create(ticket("charged twice on my invoice"));
    expect(() => JSON.parse(bad.choices[0]!.message.content!)).toThrow();
    sim.configure({ faults: { malformedJson: 0, truncated: 1 } });
    const cut = await client.chat.completions.create(ticket("charged twice on my invoice"));
    expect(cut.choices[0]!.finish_reason).toBe("length");
    expect(() => JSON.parse(cut.choices[0]!.message.content!)).toThrow();
    sim.configure({ faults: { truncated: 0, wrongAnswer: 1 } });
    const wrong = JSON.parse((await client.chat.completions.create(ticket("charged twice on my invoice"))).choices[0]!.message.content!);
    expect(wrong.category).not.toBe(honest.category);
    expect(schema.properties.category.enum).toContain(wrong.category);
    const stats = sim.stats();
    expect(stats.faults).toMatchObject({ malformed_json: 1, truncated: 1, wrong_answer: 1 });
    expect(stats.billed).toBe(4);
  });
});

describe("simulator stats", () => {
  it("counts calls by model and request hash, billed calls, and tokens", async () => {
    const a = await client.chat.completions.create(ticket("one"));
    await client.chat.completions.create(ticket("one"));
    const b = await client.chat.completions.create({ ...ticket("two"), model: "gpt-4.1" });
    const s = sim.stats();
    expect(s.calls).toBe(3);
    expect(s.callsByModel).toEqual({ "gpt-4o-mini": 2, "gpt-4.1": 1 });
    expect(Object.values(s.callsByRequestHash).sort()).toEqual([1, 2]);
    expect(Object.values(s.billedByRequestHash).sort()).toEqual([1, 2]);
    expect(s.tokens.input).toBe(2 * a.usage!.prompt_tokens + b.usage!.prompt_tokens);
    expect(s.tokens.output).toBe(2 * a.usage!.completion_tokens + b.usage!.completion_tokens);
    const viaHttp = (await (await fetch(`${sim.url}/_sim/stats`)).json()) as { calls: number };
    expect(viaHttp.calls).toBe(3);
    await fetch(`${sim.url}/_sim/reset`, { method: "POST" });
    expect(sim.stats().calls).toBe(0);
  });

  it("takes config changes at runtime over HTTP", async () => {
    const res = await fetch(`${sim.url}/_sim/config`, { method: "POST", body: JSON.stringify({ faults: { serverError: 1 } }) });
    expect(((await res.json()) as { faults: { serverError: number } }).faults.serverError).toBe(1);
    const err = await client.chat.completions.create(ticket("x")).catch((e: { status: number }) => e);
    expect((err as { status: number }).status).toBe(500);
    const badKey = await fetch(`${sim.url}/_sim/config`, { method: "POST", body: JSON.stringify({ fautls: {} }) });
    expect(badKey.status).toBe(400);
  });
});

describe("a simulator without per-request stats (the CLI's built-in one)", () => {
  it("keeps the totals and nothing per request, and still draws a new fault for each attempt of a request", async () => {
    const lean = await startSimulator({ requestStats: false, seed: 3 });
    try {
      const leanClient = new OpenAI({ apiKey: "sk-sim", baseURL: lean.openaiBaseURL, maxRetries: 0 });
      for (let i = 0; i < 20; i++) await leanClient.chat.completions.create(ticket(`ticket number ${i}`));
      await leanClient.chat.completions.create(ticket("ticket number 0"));
      const stats = lean.stats();
      expect(stats).toMatchObject({ calls: 21, realtimeCalls: 21, billed: 21 });
      expect(stats.tokens.input).toBeGreaterThan(0);
      expect(stats.callsByRequestHash).toEqual({});
      expect(stats.billedByRequestHash).toEqual({});
      expect(stats.billedAgainHow).toEqual({});
      // With faults on, attempts of one request are counted again: the same request fails, then goes through.
      lean.configure({ faults: { ...defaultSimConfig.faults, serverError: 0.5 } });
      const outcomes: boolean[] = [];
      for (let i = 0; i < 16; i++) outcomes.push(await leanClient.chat.completions.create(ticket("the same request each time")).then(() => true, () => false));
      expect(outcomes).toContain(true);
      expect(outcomes).toContain(false);
    } finally {
      await lean.close();
    }
  });
});
