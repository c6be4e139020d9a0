import { describe, expect, it } from "vitest";
import { DeterministicError, TransientError } from "../core/errors.ts";
import { classifyFailure, redactor } from "./classify.ts";
import { parseDuration, retryAfterMs } from "./limits/headers.ts";
import { rateFromHeaders as anthropicRate } from "./anthropic/headers.ts";
import { rateFromHeaders as openaiRate } from "./openai/headers.ts";

const none = (s: string) => s;

describe("classifyFailure", () => {
  it.each([429, 500, 502, 503, 504, 529, 408, 409])("%i is transient", (status) => {
    const e = classifyFailure("openai", { kind: "status", status, message: `${status} x` }, none);
    expect(e).toBeInstanceOf(TransientError);
    expect(e.status).toBe(status);
  });

  it.each([400, 401, 403, 404, 413, 422])("%i is deterministic and keeps the provider's message", (status) => {
    const e = classifyFailure("anthropic", { kind: "status", status, message: `${status} prompt is too long` }, none);
    expect(e).toBeInstanceOf(DeterministicError);
    expect(e.message).toBe(`anthropic: ${status} prompt is too long`);
  });

  it("treats an exhausted quota as deterministic even though it is a 429", () => {
    const e = classifyFailure("openai", { kind: "status", status: 429, message: "429 quota", code: "insufficient_quota" }, none);
    expect(e).toBeInstanceOf(DeterministicError);
  });

  it("takes retryAfterMs from headers, else from OpenAI's 'try again in' hint", () => {
    const h = new Headers({ "retry-after-ms": "1500", "retry-after": "9" });
    expect((classifyFailure("openai", { kind: "status", status: 429, message: "x", headers: h }, none) as TransientError).retryAfterMs).toBe(1500);
    const hint = classifyFailure("openai", { kind: "status", status: 429, message: "Please try again in 2.5s." }, none);
    expect((hint as TransientError).retryAfterMs).toBe(2500);
  });

  it("timeouts and connection errors are transient; batch codes by name", () => {
    expect(classifyFailure("openai", { kind: "timeout", message: "t" }, none)).toBeInstanceOf(TransientError);
    expect(classifyFailure("openai", { kind: "connection", message: "c" }, none)).toBeInstanceOf(TransientError);
    expect(classifyFailure("openai", { kind: "code", code: "batch_expired", message: "m" }, none)).toBeInstanceOf(TransientError);
    expect(classifyFailure("anthropic", { kind: "code", code: "overloaded_error", message: "m" }, none)).toBeInstanceOf(TransientError);
    expect(classifyFailure("anthropic", { kind: "code", code: "invalid_request_error", message: "m" }, none)).toBeInstanceOf(DeterministicError);
  });

  it("never lets a key into the message or the cause", () => {
    const key = "sk-proj-abcdefghijklmnop1234";
    const cause = new Error(`401 Incorrect API key provided: ${key}`);
    const e = classifyFailure("openai", { kind: "status", status: 401, message: cause.message, cause }, redactor([key]));
    expect(e.message).not.toContain(key);
    expect(String((e.cause as Error).message)).not.toContain(key);
    expect(e.message).toContain("[redacted]");
    expect(redactor(["my-own-secret-value"])("x my-own-secret-value y sk-ant-api03-zzzzzzzzzz")).toBe("x [redacted] y [redacted]");
  });
});

describe("rate-limit headers", () => {
  it("parses OpenAI durations", () => {
    expect(parseDuration("20ms")).toBe(20);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("6m0s")).toBe(360_000);
    expect(parseDuration("1h2m3.5s")).toBe(3_723_500);
    expect(parseDuration("soon")).toBeUndefined();
  });

  it("reads retry-after as seconds or a date", () => {
    expect(retryAfterMs(new Headers({ "retry-after": "3" }))).toBe(3000);
    const now = Date.parse("2025-01-01T00:00:00Z");
    expect(retryAfterMs(new Headers({ "retry-after": "Wed, 01 Jan 2025 00:00:05 GMT" }), now)).toBe(5000);
    expect(retryAfterMs(new Headers({}))).toBeUndefined();
  });

  it("reads both vendors' limit headers into one shape", () => {
    const o = openaiRate(new Headers({
      "x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "599", "x-ratelimit-reset-requests": "100ms",
      "x-ratelimit-limit-tokens": "100000", "x-ratelimit-remaining-tokens": "99000", "x-ratelimit-reset-tokens": "600ms",
    }));
    expect(o).toEqual({ requests: { limit: 600, remaining: 599, resetMs: 100 }, tokens: { limit: 100000, remaining: 99000, resetMs: 600 } });
    const a = anthropicRate(new Headers({
      "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49",
      "anthropic-ratelimit-input-tokens-limit": "40000", "anthropic-ratelimit-input-tokens-remaining": "39000",
    }));
    expect(a).toEqual({ requests: { limit: 50, remaining: 49 }, tokens: { limit: 40000, remaining: 39000 } });
    expect(openaiRate(new Headers({}))).toBeUndefined();
  });
});
