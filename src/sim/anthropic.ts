import type { ServerResponse } from "node:http";
import type { JsonSchema } from "../core/types.ts";
import { sendJson, type Headers } from "./http.ts";
import type { BucketReport } from "./limits.ts";
import { honestAnswer, requestHash, REFUSAL, type Answer, type ModelRequest } from "./model.ts";
import { serveRealtime, type RealtimeWire } from "./realtime.ts";
import type { SimState } from "./state.ts";

/** Anthropic's error envelope. */
export interface AnthropicErrorBody {
  type: "error";
  error: { type: string; message: string };
}

export function anthropicError(type: string, message: string): AnthropicErrorBody {
  return { type: "error", error: { type, message } };
}

/** A request to Anthropic's messages API, reduced; `tool` is set when the answer is a tool call. */
export interface MessagesRequest extends ModelRequest {
  tool?: string;
}

export type Parsed = { ok: true; req: MessagesRequest } | { ok: false; status: number; body: AnthropicErrorBody };

const bad = (message: string): Parsed => ({ ok: false, status: 400, body: anthropicError("invalid_request_error", message) });

function blocksText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map((b) => {
      if (!b || typeof b !== "object") return "";
      const block = b as { type?: unknown; text?: unknown; content?: unknown };
      if (block.type === "text") return String(block.text ?? "");
      if (block.type === "tool_result") return blocksText(block.content);
      return "";
    })
    .join("");
}

/**
 * Validate a messages body as the API does and reduce it. With tools offered
 * (and `tool_choice` not `none`) the simulated model always calls one: the
 * named tool when `tool_choice` is `{type: "tool"}`, else the first.
 */
export function parseMessages(body: unknown, needMaxTokens = true): Parsed {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return bad("Request body must be a JSON object");
  const b = body as Record<string, unknown>;
  if (typeof b.model !== "string" || b.model === "") return bad("model: Field required");
  if (needMaxTokens && b.max_tokens === undefined) return bad("max_tokens: Field required");
  if (b.max_tokens !== undefined && (typeof b.max_tokens !== "number" || !Number.isInteger(b.max_tokens) || b.max_tokens < 1)) {
    return bad("max_tokens: Input should be a valid integer greater than or equal to 1");
  }
  if (b.messages === undefined) return bad("messages: Field required");
  if (!Array.isArray(b.messages)) return bad("messages: Input should be a valid list");
  if (b.messages.length === 0) return bad("messages: at least one message is required");
  if (b.stream === true) return bad("stream: streaming is not supported by the sluice simulator");
  const user: string[] = [];
  for (const [i, m] of (b.messages as unknown[]).entries()) {
    const role = m && typeof m === "object" ? (m as { role?: unknown }).role : undefined;
    if (role !== "user" && role !== "assistant") return bad(`messages.${i}.role: Input should be 'user' or 'assistant'`);
    if (role === "user") user.push(blocksText((m as { content?: unknown }).content));
  }
  const system = typeof b.system === "string" ? b.system : Array.isArray(b.system) ? blocksText(b.system) : undefined;

  let tool: { name: string; input_schema: JsonSchema } | undefined;
  const tools = Array.isArray(b.tools) ? (b.tools as { name?: unknown; input_schema?: unknown }[]) : [];
  const choice = b.tool_choice as { type?: string; name?: string } | undefined;
  if (choice?.type === "tool") {
    const found = tools.find((t) => t?.name === choice.name);
    if (!found) return bad(`tool_choice: Tool '${String(choice.name)}' not found in tools`);
    tool = found as typeof tool;
  } else if (tools.length > 0 && choice?.type !== "none") {
    tool = tools[0] as typeof tool;
  }
  if (tool && (typeof tool.name !== "string" || !tool.input_schema || typeof tool.input_schema !== "object")) {
    return bad("tools.0.input_schema: Field required");
  }
  return {
    ok: true,
    req: {
      model: b.model,
      system: system || undefined,
      text: user.join("\n\n"),
      schema: tool?.input_schema,
      maxTokens: typeof b.max_tokens === "number" ? b.max_tokens : undefined,
      tool: tool?.name,
    },
  };
}

/** A `message` object for an answer. */
export function message(req: MessagesRequest, a: Answer, id: string, toolUseId: string): unknown {
  let content: unknown[];
  let stop: string;
  if (a.finish === "refusal") {
    content = [{ type: "text", text: a.refusal ?? REFUSAL }];
    stop = "refusal";
  } else if (req.tool) {
    content = [{ type: "tool_use", id: toolUseId, name: req.tool, input: a.toolInput }];
    stop = a.finish === "length" ? "max_tokens" : "tool_use";
  } else {
    content = [{ type: "text", text: a.text }];
    stop = a.finish === "length" ? "max_tokens" : "end_turn";
  }
  return {
    id,
    type: "message",
    role: "assistant",
    model: req.model,
    content,
    stop_reason: stop,
    stop_sequence: null,
    usage: {
      input_tokens: a.inputTokens,
      output_tokens: a.outputTokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      service_tier: "standard",
    },
  };
}

const UNIT: Record<string, string> = {
  requests: "requests",
  tokens: "tokens",
  input_tokens: "input tokens",
  output_tokens: "output tokens",
};

export const anthropicWire: RealtimeWire = {
  requestIdHeader: "request-id",
  requestIdPrefix: "req_",
  limitHeaders(buckets: BucketReport[], now: number): Headers {
    const h: Headers = {};
    for (const b of buckets) {
      const kind = b.kind.replace("_", "-");
      h[`anthropic-ratelimit-${kind}-limit`] = b.limit;
      h[`anthropic-ratelimit-${kind}-remaining`] = b.remaining;
      // Anthropic gives the moment the bucket is full again, as RFC 3339.
      h[`anthropic-ratelimit-${kind}-reset`] = new Date(now + Math.ceil(b.resetMs / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
    }
    return h;
  },
  rejected(_model, r) {
    const limit = r.buckets.find((b) => b.kind === r.blocking)?.limit ?? 0;
    const message = r.tooLarge
      ? `This request would exceed your organization's rate limit of ${limit} ${UNIT[r.blocking]} per minute even when the limit is fully available (it asks for ${r.requested}). Reduce the prompt length or the maximum tokens requested.`
      : `This request would exceed the rate limit for your organization of ${limit} ${UNIT[r.blocking]} per minute. Please reduce the prompt length or the maximum tokens requested, or try again later.`;
    return { status: 429, body: anthropicError("rate_limit_error", message) };
  },
  injected(kind) {
    if (kind === "rate_limit") return { status: 429, body: anthropicError("rate_limit_error", "Rate limited. Please try again later.") };
    if (kind === "overloaded") return { status: 529, body: anthropicError("overloaded_error", "Overloaded") };
    return { status: 500, body: anthropicError("api_error", "Internal server error") };
  },
  success: () => undefined,
};

/** `POST /v1/messages`. */
export async function handleMessages(state: SimState, res: ServerResponse, body: unknown): Promise<void> {
  const parsed = parseMessages(body);
  if (!parsed.ok) {
    sendJson(res, parsed.status, parsed.body, { "request-id": state.id("req_") });
    return;
  }
  const req = parsed.req;
  await serveRealtime(state, res, req, requestHash(body as Record<string, unknown>), {
    ...anthropicWire,
    success: (_r, a) => message(req, a, state.id("msg_"), state.id("toolu_")),
  });
}

/** `POST /v1/messages/count_tokens`: the same count a messages call reports as `input_tokens`. */
export function handleCountTokens(state: SimState, res: ServerResponse, body: unknown): void {
  const parsed = parseMessages(body, false);
  if (!parsed.ok) {
    sendJson(res, parsed.status, parsed.body, { "request-id": state.id("req_") });
    return;
  }
  sendJson(res, 200, { input_tokens: honestAnswer(parsed.req).inputTokens }, { "request-id": state.id("req_") });
}
