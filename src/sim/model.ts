import { hashValue } from "../core/hash.ts";
import type { JsonSchema } from "../core/types.ts";
import { respond, tokens } from "./responder.ts";
import { cutToTokens, halfObject, malform, misnameObject, wrongAnswer, type ContentFault } from "./faults.ts";

/** One model request, whichever wire protocol it came in on. */
export interface ModelRequest {
  model: string;
  system?: string;
  /** The user turns, joined. */
  text: string;
  /** Structured-output schema; absent for a plain-text answer. */
  schema?: JsonSchema;
  maxTokens?: number;
}

export interface Answer {
  /** The answer as a value (for a plain-text request, the string). */
  value: unknown;
  /** The answer as the model's text: JSON for a structured request. */
  text: string;
  /** What to send as an Anthropic tool's `input`. */
  toolInput: Record<string, unknown>;
  finish: "stop" | "length" | "refusal";
  refusal?: string;
  inputTokens: number;
  outputTokens: number;
  /** The content fault applied, if one was. */
  fault?: ContentFault;
}

export const REFUSAL = "I'm sorry, but I can't help with that request.";

/**
 * Hash of everything that decides an answer: the request body in canonical
 * JSON, less the members that only label it. The same request sent realtime
 * or inside a batch hashes the same.
 *
 * @example
 * requestHash({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
 */
export function requestHash(body: Record<string, unknown>): string {
  const { metadata: _m, user: _u, stream: _s, store: _st, ...rest } = body;
  return hashValue(rest, 32);
}

/** The responder's honest answer, before any fault. */
export function honestAnswer(req: ModelRequest): Answer {
  if (req.schema) {
    const r = respond({ system: req.system, text: req.text, schema: req.schema });
    return {
      value: r.value,
      text: r.json,
      toolInput: asObject(r.value),
      finish: "stop",
      inputTokens: r.inputTokens,
      outputTokens: r.outputTokens,
    };
  }
  const r = respond({ system: req.system, text: req.text, schema: { type: "string" } });
  const text = String(r.value);
  return {
    value: text,
    text,
    toolInput: {},
    finish: "stop",
    // Same formula as the responder, without a schema in the prompt.
    inputTokens: tokens(`${req.system ?? ""}\n${req.text}`) + 8,
    outputTokens: tokens(text),
  };
}

function asObject(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : { value };
}

/**
 * Apply a content fault, and the request's own `max_tokens` (an answer longer
 * than that is cut, as a real model's would be).
 */
export function finalAnswer(req: ModelRequest, honest: Answer, fault: ContentFault | undefined, seed: string): Answer {
  let a: Answer = honest;
  if (fault === "wrong_answer" && req.schema) {
    const other = wrongAnswer(honest.value, req.schema, seed);
    if (other !== undefined) {
      const text = JSON.stringify(other);
      a = { ...honest, value: other, text, toolInput: asObject(other), outputTokens: tokens(text), fault };
    }
  } else if (fault === "malformed_json") {
    const text = malform(honest.text);
    a = { ...honest, text, toolInput: misnameObject(honest.value), outputTokens: tokens(text), fault };
  } else if (fault === "truncated") {
    const cut = cutToTokens(honest.text, Math.max(1, Math.floor(honest.outputTokens / 2)));
    a = { ...honest, text: cut.text, toolInput: halfObject(honest.value), outputTokens: cut.tokens, finish: "length", fault };
  } else if (fault === "refusal") {
    a = { ...honest, text: "", toolInput: {}, refusal: REFUSAL, outputTokens: tokens(REFUSAL), finish: "refusal", fault };
  }
  if (req.maxTokens !== undefined && a.finish !== "refusal" && a.outputTokens > req.maxTokens) {
    const cut = cutToTokens(a.text, req.maxTokens);
    a = { ...a, text: cut.text, toolInput: halfObject(a.toolInput), outputTokens: cut.tokens, finish: "length" };
  }
  return a;
}
