import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { defaultSimConfig, type FaultConfig } from "./config.ts";
import { draw, wrongAnswer } from "./faults.ts";
import { startSimulator, type Simulator } from "./index.ts";

const matrix: FaultConfig = {
  ...defaultSimConfig.faults,
  rateLimit: 0.1,
  serverError: 0.05,
  overloaded: 0.02,
  timeout: 0.01,
  malformedJson: 0.02,
  truncated: 0.01,
};

describe("fault draws", () => {
  it("hit each kind at its configured rate, and the same attempt always draws the same", () => {
    const counts: Record<string, number> = {};
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const d = draw(matrix, 42, `request-${i}`, 0);
      counts[d.fault ?? "none"] = (counts[d.fault ?? "none"] ?? 0) + 1;
      expect(draw(matrix, 42, `request-${i}`, 0).fault).toBe(d.fault);
    }
    expect(counts.rate_limit! / n).toBeCloseTo(0.1, 1);
    expect(counts.server_error! / n).toBeGreaterThan(0.04);
    expect(counts.server_error! / n).toBeLessThan(0.06);
    expect(counts.timeout! / n).toBeGreaterThan(0.005);
    expect(counts.timeout! / n).toBeLessThan(0.015);
    expect(counts.none! / n).toBeCloseTo(0.79, 1);
  });

  it("lets a retry of a failed request succeed", () => {
    const always = { ...matrix, serverError: 0.5, rateLimit: 0, overloaded: 0, timeout: 0, malformedJson: 0, truncated: 0 };
    let recovered = 0;
    for (let i = 0; i < 200; i++) {
      const first = draw(always, 1, `r${i}`, 0).fault;
      if (!first) continue;
      for (let attempt = 1; attempt < 10; attempt++) {
        if (!draw(always, 1, `r${i}`, attempt).fault) {
          recovered++;
          break;
        }
      }
    }
    expect(recovered).toBeGreaterThan(80);
  });

  it("picks another allowed enum value for a wrong answer", () => {
    const schema = { type: "object", properties: { label: { enum: ["a", "b", "c"] }, note: { type: "string" } } };
    for (let i = 0; i < 20; i++) {
      const seed = draw(matrix, i, "x", 0).seed;
      const out = wrongAnswer({ label: "b", note: "n" }, schema, seed) as { label: string; note: string };
      expect(["a", "c"]).toContain(out.label);
      expect(out.note).toBe("n");
    }
    expect(wrongAnswer({ note: "n" }, { type: "object", properties: { note: { type: "string" } } }, "0".repeat(64))).toBeUndefined();
  });
});

describe("transport faults over HTTP", () => {
  let sim: Simulator;
  const body = { model: "gpt-4o-mini", messages: [{ role: "user" as const, content: "hello" }] };

  beforeAll(async () => {
    sim = await startSimulator({ config: { timeoutHoldMs: 150 } });
  });
  afterAll(() => sim.close());
  beforeEach(() => {
    sim.configure({ faults: defaultSimConfig.faults });
    sim.reset();
  });

  it("holds a timeout fault past the client's timeout", async () => {
    sim.configure({ faults: { timeout: 1 }, timeoutHoldMs: 5_000 });
    const client = new OpenAI({ apiKey: "k", baseURL: sim.openaiBaseURL, maxRetries: 0, timeout: 1_000 });
    const started = Date.now();
    const err = await client.chat.completions.create(body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    // The client gave up at its own timeout, well before the server's hold would have dropped it.
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(sim.stats().faults.timeout).toBe(1);
    sim.configure({ timeoutHoldMs: 150 });
  });

  it("drops the connection of a held request after timeoutHoldMs", async () => {
    sim.configure({ faults: { timeout: 1 } });
    const client = new OpenAI({ apiKey: "k", baseURL: sim.openaiBaseURL, maxRetries: 0, timeout: 10_000 });
    const err = await client.chat.completions.create(body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIConnectionError);
    expect(err).not.toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
  });

  it("resets the connection", async () => {
    sim.configure({ faults: { connectionReset: 1 } });
    const client = new OpenAI({ apiKey: "k", baseURL: sim.openaiBaseURL, maxRetries: 0 });
    const err = await client.chat.completions.create(body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIConnectionError);
    expect(sim.stats().faults.connection_reset).toBe(1);
    expect(sim.stats().billed).toBe(0);
  });

  it("adds configured latency", async () => {
    sim.configure({ latency: { meanMs: 120, jitterMs: 20 } });
    const client = new OpenAI({ apiKey: "k", baseURL: sim.openaiBaseURL, maxRetries: 0 });
    const started = Date.now();
    await client.chat.completions.create(body);
    expect(Date.now() - started).toBeGreaterThanOrEqual(99);
    sim.configure({ latency: { meanMs: 0, jitterMs: 0 } });
  });

  it("closes promptly while a request is held", async () => {
    const other = await startSimulator({ config: { faults: { timeout: 1 }, timeoutHoldMs: 60_000 } });
    const pending = fetch(`${other.openaiBaseURL}/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer k" },
      body: JSON.stringify(body),
    }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    await other.close();
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(await pending).toBeInstanceOf(Error);
  });
});
