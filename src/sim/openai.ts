import type { ServerResponse } from "node:http";
import type { JsonSchema } from "../core/types.ts";
import { openaiDuration, sendJson, type Headers } from "./http.ts";
import type { BucketReport } from "./limits.ts";
import { requestHash, type Answer, type ModelRequest } from "./model.ts";
import { serveRealtime, type RealtimeWire } from "./realtime.ts";
import type { SimState } from "./state.ts";

/** OpenAI's error envelope. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function openaiError(message: string, type = "invalid_request_error", param: string | null = null, code: string | null = null): OpenAIErrorBody {
  return { error: { message, type, param, code } };
}

export type Parsed = { ok: true; req: ModelRequest } | { ok: false; status: number; body: OpenAIErrorBody };

const bad = (message: string, param: string | null = null, code: string | null = null): Parsed => ({
  ok: false,
  status: 400,
  body: openaiError(message, "invalid_request_error", param, code),
});

function partText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map((p) => (p && typeof p === "object" && (p as { type?: unknown }).type === "text" ? String((p as { text?: unknown }).text ?? "") : ""))
    .join("");
}

/** Validate a chat completions body the way the API does, and reduce it to a `ModelRequest`. */
export function parseChat(body: unknown): Parsed {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return bad("The request body must be a JSON object.");
  const b = body as Record<string, unknown>;
  if (typeof b.model !== "string" || b.model === "") return bad("you must provide a model parameter");
  if (b.messages === undefined) return bad("Missing required parameter: 'messages'.", "messages", "missing_required_parameter");
  if (!Array.isArray(b.messages)) return bad("Invalid type for 'messages': expected an array.", "messages", "invalid_type");
  if (b.messages.length === 0) {
    return bad("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", "messages", "empty_array");
  }
  if (b.stream === true) return bad("Streaming is not supported by the sluice simulator.", "stream", "unsupported_value");
  const system: string[] = [];
  const user: string[] = [];
  for (const [i, m] of (b.messages as unknown[]).entries()) {
    const role = m && typeof m === "object" ? (m as { role?: unknown }).role : undefined;
    if (typeof role !== "string") return bad(`Missing required parameter: 'messages[${i}].role'.`, `messages[${i}].role`, "missing_required_parameter");
    const text = partText((m as { content?: unknown }).content);
    if (role === "system" || role === "developer") system.push(text);
    else if (role === "user") user.push(text);
  }
  let schema: JsonSchema | undefined;
  const format = b.response_format as { type?: string; json_schema?: { name?: unknown; schema?: unknown } } | undefined;
  if (format?.type === "json_schema") {
    if (typeof format.json_schema?.name !== "string") {
      return bad("Missing required parameter: 'response_format.json_schema.name'.", "response_format.json_schema.name", "missing_required_parameter");
    }
    schema = (format.json_schema.schema as JsonSchema | undefined) ?? { type: "object" };
  } else if (format?.type === "json_object") {
    schema = { type: "object" };
  }
  const max = b.max_completion_tokens ?? b.max_tokens;
  if (max !== undefined && max !== null && (typeof max !== "number" || !Number.isInteger(max) || max < 1)) {
    return bad(`Invalid 'max_completion_tokens': must be a positive integer.`, "max_completion_tokens", "invalid_value");
  }
  return {
    ok: true,
    req: {
      model: b.model,
      system: system.length ? system.join("\n") : undefined,
      text: user.join("\n\n"),
      schema,
      maxTokens: typeof max === "number" ? max : undefined,
    },
  };
}

/** A `chat.completion` object for an answer. */
export function chatCompletion(req: ModelRequest, a: Answer, id: string): unknown {
  return {
    id,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: req.model,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: a.finish === "refusal" ? null : a.text,
          refusal: a.refusal ?? null,
          annotations: [],
        },
        logprobs: null,
        // A refusal still ends normally on the OpenAI wire; `message.refusal` says it.
        finish_reason: a.finish === "length" ? "length" : "stop",
      },
    ],
    usage: {
      prompt_tokens: a.inputTokens,
      completion_tokens: a.outputTokens,
      total_tokens: a.inputTokens + a.outputTokens,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    },
    service_tier: "default",
    system_fingerprint: "fp_sluice_sim",
  };
}

const SERVER_ERROR = "The server had an error while processing your request. Sorry about that!";

export const openaiWire: RealtimeWire = {
  requestIdHeader: "x-request-id",
  requestIdPrefix: "req_",
  limitHeaders(buckets: BucketReport[]): Headers {
    const h: Headers = {};
    for (const b of buckets) {
      if (b.kind !== "requests" && b.kind !== "tokens") continue;
      h[`x-ratelimit-limit-${b.kind}`] = b.limit;
      h[`x-ratelimit-remaining-${b.kind}`] = b.remaining;
      h[`x-ratelimit-reset-${b.kind}`] = openaiDuration(b.resetMs);
    }
    return h;
  },
  rejected(model, r) {
    const kind = r.blocking === "requests" ? "requests" : "tokens";
    const unit = kind === "requests" ? "requests per min (RPM)" : "tokens per min (TPM)";
    const bucket = r.buckets.find((b) => b.kind === r.blocking);
    const limit = bucket?.limit ?? 0;
    const message = r.tooLarge
      ? `Request too large for ${model} in organization org-sluice-sim on ${unit}: Limit ${limit}, Requested ${r.requested}. The input or output tokens must be reduced in order to run successfully.`
      : `Rate limit reached for ${model} in organization org-sluice-sim on ${unit}: Limit ${limit}, Used ${limit - (bucket?.remaining ?? 0)}, Requested ${r.requested}. Please try again in ${openaiDuration(r.retryAfterMs)}.`;
    return { status: 429, body: openaiError(message, kind, null, "rate_limit_exceeded") };
  },
  injected(kind) {
    if (kind === "rate_limit") {
      return { status: 429, body: openaiError("Rate limit reached for requests. Please try again in 1s.", "requests", null, "rate_limit_exceeded") };
    }
    if (kind === "overloaded") return { status: 503, body: openaiError("The server is overloaded or not ready yet.", "server_error") };
    return { status: 500, body: openaiError(SERVER_ERROR, "server_error") };
  },
  success: chatCompletion,
};

/** `POST /v1/chat/completions`. */
export async function handleChat(state: SimState, res: ServerResponse, body: unknown): Promise<void> {
  const parsed = parseChat(body);
  if (!parsed.ok) {
    sendJson(res, parsed.status, parsed.body, { "x-request-id": state.id("req_") });
    return;
  }
  await serveRealtime(state, res, parsed.req, requestHash(body as Record<string, unknown>), {
    ...openaiWire,
    success: (req, a) => chatCompletion(req, a, state.id("chatcmpl-", 29)),
  });
}
