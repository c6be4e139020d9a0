import { describe, expect, it } from "vitest";
import { DeterministicError } from "../core/errors.ts";
import { createProvider, resolveProviderEnv } from "./index.ts";

describe("resolveProviderEnv", () => {
  it("asks for the simulator only when a provider has neither key nor base URL", () => {
    expect(resolveProviderEnv({})).toEqual({
      openai: { provider: "openai", hasKey: false, baseURL: undefined, needsSimulator: true },
      anthropic: { provider: "anthropic", hasKey: false, baseURL: undefined, needsSimulator: true },
    });
    const env = resolveProviderEnv({ OPENAI_API_KEY: "sk-real-key-123456", ANTHROPIC_BASE_URL: "http://127.0.0.1:9999", ANTHROPIC_API_KEY: "  " });
    expect(env.openai).toMatchObject({ hasKey: true, needsSimulator: false });
    expect(env.anthropic).toMatchObject({ hasKey: false, baseURL: "http://127.0.0.1:9999", needsSimulator: false });
    expect(JSON.stringify(env)).not.toContain("sk-real-key-123456");
  });
});

describe("a provider's base URL", () => {
  it("is refused, with a reason that never repeats the password, when it carries credentials or is not an http(s) URL", () => {
    const withPassword = { OPENAI_API_KEY: "sk-x", OPENAI_BASE_URL: "http://qauser:pw-HUNTER2@127.0.0.1:28711/v1" };
    for (const attempt of [() => resolveProviderEnv(withPassword), () => createProvider({ provider: "openai", env: withPassword })]) {
      expect(attempt).toThrow(DeterministicError);
      expect(attempt).toThrow("OPENAI_BASE_URL carries credentials (http://***@127.0.0.1:28711)");
      expect(() => attempt()).not.toThrow(/HUNTER2|qauser/);
    }
    expect(() => createProvider({ provider: "anthropic", env: { ANTHROPIC_BASE_URL: "localhost:8787" } })).toThrow(/ANTHROPIC_BASE_URL is an? .*URL|ANTHROPIC_BASE_URL is not a URL/);
    expect(() => createProvider({ provider: "anthropic", env: { ANTHROPIC_BASE_URL: "nope" } })).toThrow('ANTHROPIC_BASE_URL is not a URL: "nope"');
    expect(createProvider({ provider: "openai", env: { OPENAI_BASE_URL: "http://127.0.0.1:9999/v1" } }).baseURL).toBe("http://127.0.0.1:9999/v1");
  });
});

describe("createProvider", () => {
  it("refuses to start without a key or a base URL, naming the variable to set", () => {
    expect(() => createProvider({ provider: "openai", env: {} })).toThrow(DeterministicError);
    expect(() => createProvider({ provider: "anthropic", env: {} })).toThrow(/ANTHROPIC_API_KEY/);
  });

  it("honours OPENAI_BASE_URL / ANTHROPIC_BASE_URL like the SDKs, with the option winning", () => {
    const env = { OPENAI_BASE_URL: "http://127.0.0.1:1/v1", ANTHROPIC_BASE_URL: "http://127.0.0.1:2" };
    expect(createProvider({ provider: "openai", env }).baseURL).toBe("http://127.0.0.1:1/v1");
    expect(createProvider({ provider: "anthropic", env }).baseURL).toBe("http://127.0.0.1:2");
    expect(createProvider({ provider: "openai", env, baseURL: "http://127.0.0.1:3/v1" }).baseURL).toBe("http://127.0.0.1:3/v1");
    const p = createProvider({ provider: "anthropic", apiKey: "sk-ant-x-123456", env: {} });
    expect(p.baseURL).toBeUndefined();
    expect(p.batch.maxRequests).toBe(100_000);
    expect(p.batch.maxBytes).toBe(256 * 1024 * 1024);
    expect(createProvider({ provider: "openai", apiKey: "sk-x-123456", env: {} }).batch.maxRequests).toBe(50_000);
  });
});
