import { DeterministicError } from "../core/errors.ts";
import type { ClientSettings, VendorAdapter } from "./adapter.ts";
import { redactor } from "./classify.ts";
import { limitedComplete } from "./limited.ts";
import { ProviderLimiter, type LimiterOptions, type LimiterStats } from "./limiter.ts";
import type { BreakerOptions, BreakerState } from "./limits/breaker.ts";
import { ANTHROPIC_BATCH_LIMITS } from "./anthropic/batch-limits.ts";
import { OPENAI_BATCH_LIMITS } from "./openai/batch-limits.ts";
import type { BatchApi, Provider } from "./types.ts";

export type VendorName = "openai" | "anthropic";

export interface CreateProviderOptions {
  provider: VendorName;
  /** Defaults to `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`. */
  apiKey?: string;
  /** Defaults to `OPENAI_BASE_URL` / `ANTHROPIC_BASE_URL`, then the vendor's public API. */
  baseURL?: string;
  /** Per-model limits. Unset ones are learned from the provider's rate-limit headers. */
  limits?: { rpm?: number; tpm?: number };
  /** Per-request timeout. Default 60 s. */
  timeoutMs?: number;
  /** Limiter tuning: pace, burst, concurrency, circuit breaker, clock. */
  limiter?: Omit<LimiterOptions, "limits"> & { breaker?: BreakerOptions };
  /** Where to read keys and base URLs. Default `process.env`. */
  env?: Record<string, string | undefined>;
}

export interface ProviderStats {
  breaker: BreakerState;
  models: LimiterStats[];
}

/** A Provider built by sluice: always has batch, and says how its limiter is doing. */
export interface SluiceProvider extends Provider {
  readonly name: VendorName;
  readonly batch: BatchApi;
  /** Where requests go; undefined means the vendor's public API. */
  readonly baseURL: string | undefined;
  stats(): ProviderStats;
}

const ENV = {
  openai: { key: "OPENAI_API_KEY", url: "OPENAI_BASE_URL" },
  anthropic: { key: "ANTHROPIC_API_KEY", url: "ANTHROPIC_BASE_URL" },
} as const;

/** Sent when a base URL is given without a key (a local simulator or proxy): the SDKs refuse to start without one. */
const LOCAL_KEY = "sluice-local";

export const DEFAULT_TIMEOUT_MS = 60_000;

/**
 * An OpenAI or Anthropic provider over the official SDK, with SDK retries off
 * (the engine retries), a rate limiter per model (RPM + TPM, adaptive
 * concurrency) and a circuit breaker. `complete` throws TransientError or
 * DeterministicError; `batch` is the vendor's native batch API.
 *
 * @example
 * const provider = createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, limits: { rpm: 600, tpm: 100_000 } });
 * const result = await provider.complete({
 *   customId: "t-1", model: "gpt-4o-mini", messages: [{ role: "user", content: "Classify: refund please" }],
 *   schema: { name: "label", schema: { type: "object", properties: { label: { type: "string" } }, required: ["label"], additionalProperties: false } },
 *   params: { maxTokens: 100 },
 * });
 */
export function createProvider(options: CreateProviderOptions): SluiceProvider {
  const env = options.env ?? process.env;
  const names = ENV[options.provider];
  if (!names) throw new DeterministicError(`unknown provider "${String(options.provider)}" (use "openai" or "anthropic")`);
  const baseURL = checkedBaseURL(nonEmpty(options.baseURL) ?? nonEmpty(env[names.url]), names.url);
  const apiKey = nonEmpty(options.apiKey) ?? nonEmpty(env[names.key]);
  if (!apiKey && !baseURL) {
    throw new DeterministicError(
      `no ${options.provider} API key: set ${names.key}, or run without one and let sluice start its simulator`,
    );
  }
  const settings: ClientSettings = {
    apiKey: apiKey ?? LOCAL_KEY,
    baseURL,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  };
  const redact = redactor([apiKey]);
  const adapter = lazyAdapter(options.provider, settings, redact);
  const limiter = new ProviderLimiter(options.provider, { ...options.limiter, limits: options.limits });
  return {
    name: options.provider,
    baseURL,
    batch: adapter.batch,
    complete: (request, callOptions) => limitedComplete(adapter, limiter, request, callOptions),
    stats: () => limiter.stats(),
    close: async () => {},
  };
}

/**
 * The vendor's adapter, its SDK imported on the first call: a process whose
 * stages use one provider never loads the other SDK, and a command that makes
 * no call loads neither (each SDK is 10-25 MB of resident memory).
 */
function lazyAdapter(name: VendorName, settings: ClientSettings, redact: (text: string) => string): VendorAdapter {
  let loading: Promise<VendorAdapter> | undefined;
  const load = () =>
    (loading ??=
      name === "openai"
        ? import("./openai/index.ts").then((m) => m.openaiAdapter(settings, redact))
        : import("./anthropic/index.ts").then((m) => m.anthropicAdapter(settings, redact)));
  const limits = name === "openai" ? OPENAI_BATCH_LIMITS : ANTHROPIC_BATCH_LIMITS;
  const batch: BatchApi = {
    maxRequests: limits.maxRequests,
    maxBytes: limits.maxBytes,
    submit: async (requests, submitOptions) => (await load()).batch.submit(requests, submitOptions),
    findSubmitted: async (tag, match) => {
      const real = (await load()).batch;
      return real.findSubmitted ? real.findSubmitted(tag, match) : undefined;
    },
    poll: async (batchId) => (await load()).batch.poll(batchId),
    results: (batchId) => ({
      async *[Symbol.asyncIterator]() {
        yield* (await load()).batch.results(batchId);
      },
    }),
    cancel: async (batchId) => (await load()).batch.cancel(batchId),
  };
  return { name, call: async (request, signal) => (await load()).call(request, signal), batch };
}

export interface ProviderEnv {
  provider: VendorName;
  /** A key is set in the environment. Its value is never returned. */
  hasKey: boolean;
  /** `OPENAI_BASE_URL` / `ANTHROPIC_BASE_URL`, when set. */
  baseURL?: string;
  /** Neither a key nor a base URL: the CLI should start the simulator and point this provider at it. */
  needsSimulator: boolean;
}

/**
 * What the environment says about each provider, so the CLI can decide to
 * start the simulator (and say so) when no real key is set.
 *
 * @example
 * const { openai } = resolveProviderEnv(process.env);
 * if (openai.needsSimulator) console.error("no OPENAI_API_KEY: using the simulator");
 */
export function resolveProviderEnv(env: Record<string, string | undefined> = process.env): Record<VendorName, ProviderEnv> {
  const one = (provider: VendorName): ProviderEnv => {
    const hasKey = nonEmpty(env[ENV[provider].key]) !== undefined;
    const baseURL = checkedBaseURL(nonEmpty(env[ENV[provider].url]), ENV[provider].url);
    return { provider, hasKey, baseURL, needsSimulator: !hasKey && baseURL === undefined };
  };
  return { openai: one("openai"), anthropic: one("anthropic") };
}

/**
 * A provider's base URL, refused with a one-line reason when it is not an
 * http(s) URL or carries credentials (`user:password@`): the SDKs' fetch
 * refuses such a URL on every call (the run would only retry), and the URL
 * is printed and becomes part of the endpoint that keys the request cache.
 * The reason never repeats the password.
 */
function checkedBaseURL(value: string | undefined, name: string): string | undefined {
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new DeterministicError(`${name} is not a URL: "${value.replace(/\/\/[^/@]*@/, "//***@")}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new DeterministicError(`${name} is an ${url.protocol.replace(":", "")} URL; the API is reached over http or https`);
  if (url.username || url.password) {
    throw new DeterministicError(`${name} carries credentials (${url.protocol}//***@${url.host}): the provider's key goes in its API key variable, not in the URL`);
  }
  return value;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v !== undefined && v.trim() !== "" ? v.trim() : undefined;
}

export { packBatches, PER_REQUEST_OVERHEAD, type PackOptions, type BatchLimits } from "./batching.ts";
export { costOf, costBreakdown, isPriced, priceOf, PRICES, type ModelPrice, type Cost, type PriceMode } from "./prices.ts";
export { ModelLimiter, ProviderLimiter, type LimiterOptions, type LimiterStats, type CallOutcome, type Permit } from "./limiter.ts";
export { FakeClock, systemClock, type Clock } from "./limits/clock.ts";
export type { BreakerOptions, BreakerState } from "./limits/breaker.ts";
export { OPENAI_BATCH_LIMITS } from "./openai/batch-limits.ts";
export { ANTHROPIC_BATCH_LIMITS } from "./anthropic/batch-limits.ts";
export type * from "./types.ts";
