import { decode, encode } from "../core/tokens.ts";
import { sha256 } from "../core/hash.ts";
import type { JsonSchema } from "../core/types.ts";
import type { FaultConfig, LatencyConfig } from "./config.ts";
import type { FaultKind } from "./stats.ts";

/** Faults that leave no answer: an HTTP error, a held request, or a dropped socket. */
export type TransportFault = "rate_limit" | "server_error" | "overloaded" | "timeout" | "connection_reset";
/** Faults that still give a 200 (and a bill), with a bad answer. */
export type ContentFault = "malformed_json" | "truncated" | "refusal" | "wrong_answer";

const ORDER: [keyof FaultConfig, TransportFault | ContentFault][] = [
  ["rateLimit", "rate_limit"],
  ["serverError", "server_error"],
  ["overloaded", "overloaded"],
  ["timeout", "timeout"],
  ["connectionReset", "connection_reset"],
  ["malformedJson", "malformed_json"],
  ["truncated", "truncated"],
  ["refusal", "refusal"],
  ["wrongAnswer", "wrong_answer"],
];

export interface Draw {
  fault?: TransportFault | ContentFault;
  /** Seed for anything the fault itself chooses (which enum value is wrong). */
  seed: string;
  /** A second independent uniform number, for latency. */
  u2: number;
  /** A third, for a batch request's failure. */
  u3: number;
}

/**
 * Decide the fate of one attempt from hash(seed, request hash, attempt). The
 * same attempt of the same request always draws the same fault, and attempt
 * n+1 draws afresh, so retries can succeed and test runs repeat exactly. The
 * probabilities partition [0, 1), so the rates of each kind are as configured.
 *
 * @example
 * draw(faults, 1, "ab12…", 0).fault; // e.g. "server_error", or undefined
 */
export function draw(faults: FaultConfig, seed: number, requestHash: string, attempt: number, only?: "content"): Draw {
  const h = sha256(`${seed}:${requestHash}:${attempt}`);
  const u = parseInt(h.slice(0, 8), 16) / 0x1_0000_0000;
  const u2 = parseInt(h.slice(8, 16), 16) / 0x1_0000_0000;
  const u3 = parseInt(h.slice(24, 32), 16) / 0x1_0000_0000;
  let edge = 0;
  for (const [key, kind] of ORDER) {
    if (only === "content" && isTransport(kind)) continue;
    edge += faults[key];
    if (u < edge) return { fault: kind, seed: h, u2, u3 };
  }
  return { seed: h, u2, u3 };
}

export function isTransport(kind: FaultKind): kind is TransportFault {
  return kind === "rate_limit" || kind === "server_error" || kind === "overloaded" || kind === "timeout" || kind === "connection_reset";
}

export function latencyMs(latency: LatencyConfig, u: number): number {
  if (latency.meanMs <= 0 && latency.jitterMs <= 0) return 0;
  return Math.max(0, latency.meanMs + (u * 2 - 1) * latency.jitterMs);
}

/** Text that is close to JSON but does not parse (single quotes, as a sloppy model writes). */
export function malform(json: string): string {
  return json.includes('"') ? json.replace(/"/g, "'") : `Answer: ${json}`;
}

/** Cut a text to at most `maxTokens` tokens; returns the cut text and its token count. */
export function cutToTokens(text: string, maxTokens: number): { text: string; tokens: number } {
  const ids = encode(text);
  if (ids.length <= maxTokens) return { text, tokens: ids.length };
  const kept = ids.slice(0, Math.max(0, maxTokens));
  return { text: decode(kept), tokens: kept.length };
}

/** For a tool call cut short: the leading half of an object's members. */
export function halfObject(value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return {};
  const entries = Object.entries(value);
  return Object.fromEntries(entries.slice(0, Math.floor(entries.length / 2)));
}

/** For a tool call that should fail validation: every member renamed. */
export function misnameObject(value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return { value };
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [`${k}_value`, v]));
}

/**
 * A schema-valid but different answer: the first enum (or else boolean) found
 * gets another allowed value. Returns undefined when the schema leaves no
 * choice to get wrong.
 */
export function wrongAnswer(value: unknown, schema: JsonSchema, seed: string): unknown {
  const u = parseInt(seed.slice(16, 24), 16) / 0x1_0000_0000;
  const changed = { done: false };
  const out = rewrite(value, schema, u, changed);
  return changed.done ? out : undefined;
}

function rewrite(value: unknown, schema: JsonSchema, u: number, changed: { done: boolean }): unknown {
  if (changed.done) return value;
  const options = Array.isArray(schema.enum) ? (schema.enum as unknown[]) : undefined;
  if (options && options.length > 1) {
    const at = options.indexOf(value);
    const others = options.filter((_, i) => i !== at);
    changed.done = true;
    return others[Math.floor(u * others.length)];
  }
  if (Array.isArray(value)) {
    const items = (schema.items ?? {}) as JsonSchema;
    return value.map((v) => rewrite(v, items, u, changed));
  }
  if (value !== null && typeof value === "object") {
    const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
    const out: Record<string, unknown> = {};
    // Enums are the answers that matter (labels), so they go first.
    const keys = Object.keys(value).sort((a, b) => Number(!props[a]?.enum) - Number(!props[b]?.enum));
    for (const k of keys) out[k] = rewrite((value as Record<string, unknown>)[k], props[k] ?? {}, u, changed);
    return Object.fromEntries(Object.keys(value).map((k) => [k, out[k]]));
  }
  if (typeof value === "boolean") {
    changed.done = true;
    return !value;
  }
  return value;
}
