import { getEventListeners } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { inspect } from "node:util";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DeterministicError, TransientError } from "../core/errors.ts";
import { compileSchema } from "../core/schema.ts";
import { respond } from "../sim/responder.ts";
import { defaultSimConfig, startSimulator, type SimConfigPatch, type Simulator } from "../sim/index.ts";
import { createProvider, type CreateProviderOptions, type SluiceProvider, type VendorName } from "./index.ts";
import type { CompletionRequest, CompletionResult } from "./types.ts";

/**
 * One suite for every provider: OpenAI and Anthropic, realtime and batch,
 * through the official SDKs against the simulator on loopback. The same
 * requests must come back as the same parsed answers in every combination,
 * and failures must land in the same sluice error classes.
 */
type Mode = "realtime" | "batch";
const COMBOS: [VendorName, Mode][] = [
  ["openai", "realtime"],
  ["openai", "batch"],
  ["anthropic", "realtime"],
  ["anthropic", "batch"],
];

const triage = {
  name: "triage",
  schema: {
    type: "object",
    properties: {
      category: { type: "string", enum: ["billing", "refund", "bug", "how_to", "account", "other"] },
      priority: { type: "string", enum: ["low", "medium", "high", "critical"] },
      confidence: { type: "number" },
    },
    required: ["category", "priority", "confidence"],
    additionalProperties: false,
  },
};
const extract = {
  name: "fields",
  schema: {
    type: "object",
    properties: {
      order_id: { type: ["string", "null"] },
      amount: { type: ["number", "null"] },
      email: { type: ["string", "null"] },
      tags: { type: "array", items: { type: "string" } },
    },
    required: ["order_id", "amount", "email", "tags"],
    additionalProperties: false,
  },
};

const TEXTS = [
  "I was charged twice on invoice INV-20931, please refund $49.99 to me@example.com",
  "The app crashes every time I export a report. Urgent, we are blocked.",
  "How do I set up two-factor authentication for my account?",
  "Order ORD-77812 never arrived and I want my money back.",
  "Typo on the pricing page, minor.",
];

const REQUESTS: CompletionRequest[] = TEXTS.flatMap((text, i) => [
  { customId: `t-${i}`, model: "gpt-4o-mini", system: "Triage the support ticket.", messages: [{ role: "user", content: text }], schema: triage, params: { maxTokens: 200 } },
  { customId: `x-${i}`, model: "gpt-4o-mini", system: "Extract the fields.", messages: [{ role: "user", content: text }], schema: extract, params: {} },
]);

let sim: Simulator;
const RESET: SimConfigPatch = {
  limits: {},
  faults: defaultSimConfig.faults,
  batch: defaultSimConfig.batch,
  latency: defaultSimConfig.latency,
};

beforeAll(async () => {
  sim = await startSimulator({ seed: 7 });
});
afterAll(async () => {
  await sim?.close();
});
beforeEach(() => {
  sim.configure(RESET);
  sim.reset();
});

function providerFor(vendor: VendorName, extra: Partial<CreateProviderOptions> = {}): SluiceProvider {
  return createProvider({
    provider: vendor,
    baseURL: vendor === "openai" ? sim.openaiBaseURL : sim.anthropicBaseURL,
    apiKey: "sk-test-conformance-key-0001",
    env: {},
    ...extra,
  });
}

type Outcome = { ok: true; result: CompletionResult } | { ok: false; error: Error };

async function waitForEnd(provider: SluiceProvider, batchId: string) {
  for (let i = 0; i < 200; i++) {
    const state = await provider.batch.poll(batchId);
    if (state.status !== "in_progress") return state;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`batch ${batchId} did not end`);
}

/** Run requests in one mode; outcomes by custom id. */
async function run(provider: SluiceProvider, mode: Mode, requests: CompletionRequest[]): Promise<Map<string, Outcome>> {
  const out = new Map<string, Outcome>();
  if (mode === "realtime") {
    await Promise.all(
      requests.map(async (r) => {
        try {
          out.set(r.customId, { ok: true, result: await provider.complete(r) });
        } catch (error) {
          out.set(r.customId, { ok: false, error: error as Error });
        }
      }),
    );
    return out;
  }
  const { batchId } = await provider.batch.submit(requests);
  await waitForEnd(provider, batchId);
  for await (const r of provider.batch.results(batchId)) out.set(r.customId, r.ok ? { ok: true, result: r.result } : { ok: false, error: r.error });
  return out;
}

function expected(r: CompletionRequest): unknown {
  return respond({ system: r.system, text: r.messages.map((m) => m.content).join("\n\n"), schema: r.schema.schema }).value;
}

const answersByCombo = new Map<string, Map<string, unknown>>();

describe.each(COMBOS)("provider conformance: %s %s", (vendor, mode) => {
  it("answers every request with schema-valid JSON, the simulator's answer, and real usage", async () => {
    const outcomes = await run(providerFor(vendor), mode, REQUESTS);
    expect([...outcomes.keys()].sort()).toEqual(REQUESTS.map((r) => r.customId).sort());
    const answers = new Map<string, unknown>();
    for (const r of REQUESTS) {
      const o = outcomes.get(r.customId)!;
      if (!o.ok) throw o.error;
      expect(o.result.finishReason).toBe("stop");
      expect(o.result.model).toBe("gpt-4o-mini");
      expect(o.result.usage.inputTokens).toBeGreaterThan(10);
      expect(o.result.usage.outputTokens).toBeGreaterThan(0);
      const parsed = JSON.parse(o.result.text) as unknown;
      expect(compileSchema(r.schema.schema)(parsed).ok).toBe(true);
      expect(parsed).toEqual(expected(r));
      answers.set(r.customId, parsed);
    }
    answersByCombo.set(`${vendor}/${mode}`, answers);
  });

  it("maps refusals and truncation to finish reasons", async () => {
    const provider = providerFor(vendor);
    sim.configure({ faults: { ...defaultSimConfig.faults, refusal: 1 } });
    const refused = (await run(provider, mode, REQUESTS.slice(0, 2))).get("t-0")!;
    expect(refused.ok && refused.result.finishReason).toBe("refusal");
    expect(refused.ok && refused.result.refusal).toMatch(/can't help/);
    sim.configure({ faults: { ...defaultSimConfig.faults, truncated: 1 } });
    const cut = (await run(provider, mode, REQUESTS.slice(2, 4))).get("t-1")!;
    expect(cut.ok && cut.result.finishReason).toBe("length");
  });

  it("rejects an invalid request as a DeterministicError with the provider's message", async () => {
    const bad: CompletionRequest = { ...REQUESTS[0]!, customId: "bad-1", system: undefined, messages: [] };
    const o = (await run(providerFor(vendor), mode, [bad, REQUESTS[1]!])).get("bad-1")!;
    expect(o.ok).toBe(false);
    const err = (o as { error: Error }).error;
    expect(err).toBeInstanceOf(DeterministicError);
    expect(err.message).toMatch(new RegExp(`^${vendor}: .*(empty array|at least one message)`));
  });
});

describe("provider conformance: across combinations", () => {
  it("gives the same parsed answers for the same requests in every combination", () => {
    expect([...answersByCombo.keys()].sort()).toEqual(COMBOS.map(([v, m]) => `${v}/${m}`).sort());
    const [first, ...rest] = [...answersByCombo.values()];
    for (const other of rest) expect(Object.fromEntries(other)).toEqual(Object.fromEntries(first!));
  });
});

describe.each(["openai", "anthropic"] as const)("provider conformance: %s realtime failures", (vendor) => {
  const one = REQUESTS[0]!;

  it("429 from the provider's buckets is transient, with retryAfterMs, and pauses the model", async () => {
    sim.configure({ limits: { "*": { rpm: 1 } } });
    const provider = providerFor(vendor, { limiter: { learnLimits: false } });
    await provider.complete(one);
    const err = await provider.complete(REQUESTS[1]!).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as TransientError).status).toBe(429);
    expect((err as TransientError).retryAfterMs).toBeGreaterThan(50_000);
    expect((err as TransientError).retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(provider.stats().models[0]).toMatchObject({ rateLimited: 1, succeeded: 1 });
  });

  it.each([
    ["rateLimit", 429],
    ["serverError", 500],
    ["overloaded", vendor === "openai" ? 503 : 529],
  ] as const)("injected %s is a TransientError with status %i and retry-after", async (fault, status) => {
    sim.configure({ faults: { ...defaultSimConfig.faults, [fault]: 1 } });
    const err = await providerFor(vendor).complete(one).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as TransientError).status).toBe(status);
    expect((err as TransientError).retryAfterMs).toBe(1_000);
  });

  it("leaves no listener per call on the signal a run shares, and still aborts a call in flight with it", async () => {
    // The SDKs add an abort listener to the signal they are given and never remove it.
    const provider = providerFor(vendor);
    const run = new AbortController();
    for (let i = 0; i < 3; i++) await Promise.all(REQUESTS.map((r) => provider.complete(r, { signal: run.signal })));
    expect(getEventListeners(run.signal, "abort")).toHaveLength(0);
    sim.configure({ latency: { meanMs: 2_000, jitterMs: 0 } });
    const inFlight = provider.complete(one, { signal: run.signal }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    expect(getEventListeners(run.signal, "abort").length).toBeGreaterThan(0);
    run.abort(new Error("run stopped"));
    const err = await inFlight;
    expect(err).toBeInstanceOf(Error);
    expect(getEventListeners(run.signal, "abort")).toHaveLength(0);
  });

  it("timeouts and dropped connections are transient", async () => {
    sim.configure({ faults: { ...defaultSimConfig.faults, timeout: 1 }, timeoutHoldMs: 2_000 });
    const timedOut = await providerFor(vendor, { timeoutMs: 200 }).complete(one).catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(TransientError);
    expect((timedOut as Error).message).toMatch(/timed out/);
    sim.configure({ faults: { ...defaultSimConfig.faults, connectionReset: 1 } });
    const reset = await providerFor(vendor).complete(one).catch((e: unknown) => e);
    expect(reset).toBeInstanceOf(TransientError);
    expect((reset as Error).message).toMatch(/connection error/);
  });

  it("opens the circuit after repeated failures and fails fast while open", async () => {
    sim.configure({ faults: { ...defaultSimConfig.faults, serverError: 1 } });
    const provider = providerFor(vendor, { limiter: { breaker: { failureThreshold: 3, coolDownMs: 60_000 } } });
    for (let i = 0; i < 3; i++) await provider.complete(REQUESTS[i]!).catch(() => undefined);
    const callsBefore = sim.stats().realtimeCalls;
    const err = await provider.complete(one).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as TransientError).retryAfterMs).toBeGreaterThan(50_000);
    expect(sim.stats().realtimeCalls).toBe(callsBefore);
    expect(provider.stats().breaker).toBe("open");
  });
});

describe.each(["openai", "anthropic"] as const)("provider conformance: %s batch failures", (vendor) => {
  it("an errored request inside a batch is transient", async () => {
    sim.configure({ batch: { ...defaultSimConfig.batch, failureRate: 1 } });
    const outcomes = await run(providerFor(vendor), "batch", REQUESTS.slice(0, 3));
    for (const o of outcomes.values()) {
      expect(o.ok).toBe(false);
      expect((o as { error: Error }).error).toBeInstanceOf(TransientError);
    }
    expect(outcomes.size).toBe(3);
  });

  it("an expired batch returns what ran, and TransientErrors for just the rest", async () => {
    sim.configure({ batch: { ...defaultSimConfig.batch, expireBatches: true, expireFraction: 0.5 } });
    const provider = providerFor(vendor);
    const { batchId } = await provider.batch.submit(REQUESTS);
    const state = await waitForEnd(provider, batchId);
    expect(["expired", "ended"]).toContain(state.status);
    const results = [];
    for await (const r of provider.batch.results(batchId)) results.push(r);
    expect(results.map((r) => r.customId).sort()).toEqual(REQUESTS.map((r) => r.customId).sort());
    const failed = results.filter((r) => !r.ok);
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.length).toBeLessThan(REQUESTS.length);
    for (const r of failed) expect(!r.ok && r.error).toBeInstanceOf(TransientError);
  });

  it("a cancelled batch reports cancelled, and every request comes back transient", async () => {
    sim.configure({ batch: { ...defaultSimConfig.batch, processingMs: 60_000 } });
    const provider = providerFor(vendor);
    const { batchId } = await provider.batch.submit(REQUESTS.slice(0, 4));
    expect((await provider.batch.poll(batchId)).status).toBe("in_progress");
    await provider.batch.cancel(batchId);
    const state = await waitForEnd(provider, batchId);
    expect(state.status).toBe("cancelled");
    const results = [];
    for await (const r of provider.batch.results(batchId)) results.push(r);
    expect(results).toHaveLength(4);
    for (const r of results) expect(!r.ok && r.error).toBeInstanceOf(TransientError);
  });

  it("refuses to submit an empty or oversized batch before calling the provider", async () => {
    const provider = providerFor(vendor);
    await expect(provider.batch.submit([])).rejects.toBeInstanceOf(DeterministicError);
    const tooMany = Array.from({ length: provider.batch.maxRequests + 1 }, (_, i) => ({ ...REQUESTS[0]!, customId: `m-${i}` }));
    await expect(provider.batch.submit(tooMany)).rejects.toThrow(/exceed the batch limit/);
    expect(sim.stats().batches.created).toBe(0);
  });
});

describe.each(["openai", "anthropic"] as const)("provider conformance: %s secrets", (vendor) => {
  let server: Server;
  let url: string;
  const key = "sk-live-VERYSECRET-0123456789abcdef";

  beforeAll(async () => {
    // A provider that echoes the key back in its error, as real 401s partly do.
    server = createServer((_req, res) => {
      const body = vendor === "openai"
        ? { error: { message: `Incorrect API key provided: ${key}.`, type: "invalid_request_error", param: null, code: "invalid_api_key" } }
        : { type: "error", error: { type: "authentication_error", message: `invalid x-api-key ${key}` } };
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    url = vendor === "openai" ? `http://127.0.0.1:${port}/v1` : `http://127.0.0.1:${port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("keeps the API key out of error messages, causes and provider state", async () => {
    const provider = createProvider({ provider: vendor, apiKey: key, baseURL: url, env: {} });
    const err = await provider.complete(REQUESTS[0]!).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeterministicError);
    expect((err as DeterministicError).status).toBe(401);
    const everything = JSON.stringify(err, Object.getOwnPropertyNames(err)) + String((err as Error).cause) + (err as Error).stack;
    expect(everything).not.toContain(key);
    expect((err as Error).message).toContain("[redacted]");
    const batchErr = await provider.batch.submit([REQUESTS[0]!]).catch((e: unknown) => e);
    expect(batchErr).toBeInstanceOf(DeterministicError);
    expect((batchErr as Error).message).not.toContain(key);
    expect(JSON.stringify(provider)).not.toContain(key);
    expect(inspect(provider, { depth: 10, showHidden: true })).not.toContain(key);
  });
});
