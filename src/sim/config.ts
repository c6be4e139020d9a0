import { readFile } from "node:fs/promises";

/**
 * How the simulator behaves: rate limits, latency, injected faults and the
 * batch lifecycle. Every field is optional in a config file; `defaultSimConfig`
 * fills the rest (unlimited, instant, no faults).
 */
export interface SimConfig {
  /** Seed for every deterministic choice (faults, result order, ids). */
  seed: number;
  /**
   * Per-model limits, keyed by model name; `"*"` applies to any model without
   * its own entry. Each model gets its own buckets either way.
   */
  limits: Record<string, ModelLimits>;
  latency: LatencyConfig;
  faults: FaultConfig;
  /**
   * How long a `timeout` fault holds a request before dropping the connection,
   * so a client with a longer timeout than this sees a reset, and the server
   * can still close.
   */
  timeoutHoldMs: number;
  batch: BatchConfig;
  /**
   * API keys answered with 401 as revoked. The error message repeats the key
   * in full (real providers mask it): the worst case, for testing that sluice
   * never stores or prints a key.
   */
  revokedKeys: string[];
}

export interface ModelLimits {
  /** Requests per minute. */
  rpm?: number;
  /** Tokens (input + output) per minute. */
  tpm?: number;
  /** Input tokens per minute (Anthropic reports these separately). */
  itpm?: number;
  /** Output tokens per minute. */
  otpm?: number;
}

export interface LatencyConfig {
  /** Mean added delay before a realtime answer. */
  meanMs: number;
  /** Delay is uniform in `[meanMs - jitterMs, meanMs + jitterMs]`, never below 0. */
  jitterMs: number;
}

/**
 * Probabilities (0..1) per realtime attempt. They are exclusive: one attempt
 * gets at most one fault, drawn from hash(seed, request hash, attempt number),
 * so a retry of the same request is a fresh draw.
 */
export interface FaultConfig {
  /** 429 although the buckets had room (throttling the client cannot see coming). */
  rateLimit: number;
  /** 500 server error. */
  serverError: number;
  /** Anthropic 529 overloaded_error; OpenAI's form of the same is a 503. */
  overloaded: number;
  /** No answer: the request is held for `timeoutHoldMs`, then the socket is dropped. */
  timeout: number;
  /** The socket is destroyed without an answer. */
  connectionReset: number;
  /** A 200 whose content is not valid JSON (for Anthropic tools: a schema-invalid input). */
  malformedJson: number;
  /** A 200 cut short: `finish_reason: "length"` / `stop_reason: "max_tokens"`. */
  truncated: number;
  /** A 200 refusal: OpenAI `message.refusal`, Anthropic `stop_reason: "refusal"`. */
  refusal: number;
  /** A 200 with a schema-valid but different answer (another enum value). */
  wrongAnswer: number;
}

export interface BatchConfig {
  /** Probability that one batch request ends in an error result (a 500 inside the batch). */
  failureRate: number;
  /**
   * Which batches expire instead of completing: `true` (all), a probability,
   * or the 1-based ordinals of created batches (`[3]`: the third batch since reset).
   */
  expireBatches: boolean | number | number[];
  /** Share of requests an expiring batch processes before it expires. */
  expireFraction: number;
  /** Time a batch stays `validating` (OpenAI) before processing starts. */
  validatingMs: number;
  /** Time from start of processing to the last request done; 0 = at the next poll. */
  processingMs: number;
  /** When > 0, progress moves by poll instead of time: done after this many polls. */
  pollsToComplete: number;
  /** Time an OpenAI batch stays `finalizing`. */
  finalizingMs: number;
  /** Time a cancel stays `cancelling` / `canceling`. */
  cancelMs: number;
}

export const defaultSimConfig: SimConfig = Object.freeze({
  seed: 1,
  limits: {},
  latency: { meanMs: 0, jitterMs: 0 },
  faults: {
    rateLimit: 0,
    serverError: 0,
    overloaded: 0,
    timeout: 0,
    connectionReset: 0,
    malformedJson: 0,
    truncated: 0,
    refusal: 0,
    wrongAnswer: 0,
  },
  timeoutHoldMs: 30_000,
  revokedKeys: [],
  batch: {
    failureRate: 0,
    expireBatches: false,
    expireFraction: 0.5,
    validatingMs: 0,
    processingMs: 0,
    pollsToComplete: 0,
    finalizingMs: 0,
    cancelMs: 0,
  },
}) as SimConfig;

/** A config patch: top-level keys, with `latency`, `faults` and `batch` merged field by field. */
export type SimConfigPatch = Partial<Omit<SimConfig, "latency" | "faults" | "batch">> & {
  latency?: Partial<LatencyConfig>;
  faults?: Partial<FaultConfig>;
  batch?: Partial<BatchConfig>;
};

/**
 * Apply a patch to a config. `limits` is replaced whole, so a patch can remove
 * a model's limits.
 *
 * @example
 * const cfg = mergeConfig(defaultSimConfig, { faults: { serverError: 0.05 } });
 */
export function mergeConfig(base: SimConfig, patch: SimConfigPatch): SimConfig {
  checkPatch(patch);
  return {
    seed: patch.seed ?? base.seed,
    limits: patch.limits ? { ...patch.limits } : base.limits,
    latency: { ...base.latency, ...patch.latency },
    faults: { ...base.faults, ...patch.faults },
    timeoutHoldMs: patch.timeoutHoldMs ?? base.timeoutHoldMs,
    revokedKeys: patch.revokedKeys ? [...patch.revokedKeys] : base.revokedKeys,
    batch: { ...base.batch, ...patch.batch },
  };
}

const KNOWN = new Set(Object.keys(defaultSimConfig));

function checkPatch(patch: SimConfigPatch): void {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) {
    throw new Error("simulator config must be a JSON object");
  }
  for (const key of Object.keys(patch)) {
    if (!KNOWN.has(key)) throw new Error(`unknown simulator config key "${key}"`);
  }
  for (const section of ["faults", "batch", "latency"] as const) {
    const given = patch[section];
    if (given === undefined) continue;
    const known = Object.keys(defaultSimConfig[section]);
    for (const key of Object.keys(given)) {
      if (!known.includes(key)) throw new Error(`unknown simulator config key "${section}.${key}"`);
    }
  }
  for (const [key, p] of Object.entries(patch.faults ?? {})) {
    if (typeof p !== "number" || !(p >= 0 && p <= 1)) throw new Error(`faults.${key} must be a probability in [0, 1]`);
  }
}

/**
 * Read a config file (JSON, a `SimConfigPatch`) over the defaults.
 *
 * @example
 * const cfg = await loadConfig("sim.json");
 */
export async function loadConfig(path: string): Promise<SimConfig> {
  const text = await readFile(path, "utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`simulator config ${path} is not valid JSON: ${(err as Error).message}`);
  }
  return mergeConfig(defaultSimConfig, parsed as SimConfigPatch);
}
