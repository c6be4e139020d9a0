// The anthropic wire shapes, as plain functions: no SDK code is loaded here, so the
// engine's HTTP tap (transport.ts) can read answers without loading the SDK.
import type { Message, MessageCreateParamsNonStreaming, Tool } from "@anthropic-ai/sdk/resources/messages";
import { safeName } from "../adapter.ts";
import type { CompletionRequest, CompletionResult, FinishReason } from "../types.ts";


/** Anthropic requires `max_tokens`; this is used when a stage does not set one. */
export const DEFAULT_MAX_TOKENS = 4096;

/**
 * A sluice request as a messages body. Structured output is a forced tool
 * whose input schema is the stage's output schema, so the answer arrives as
 * the tool call's input. Used for realtime calls and as batch `params`.
 */
export function toMessageBody(req: CompletionRequest): MessageCreateParamsNonStreaming {
  const name = safeName(req.schema.name);
  const tool: Tool = {
    name,
    description: "Record the answer. Its input is the complete answer, following the schema exactly.",
    input_schema: req.schema.schema as Tool.InputSchema,
  };
  const body: MessageCreateParamsNonStreaming = {
    model: req.model,
    max_tokens: req.params.maxTokens ?? DEFAULT_MAX_TOKENS,
    messages: req.messages.map((m) => ({ role: m.role, content: m.content })),
    tools: [tool],
    tool_choice: { type: "tool", name },
  };
  if (req.system) body.system = req.system;
  // `temperature` and `top_p` are not sent: the Messages API version this SDK
  // speaks deprecated sampling parameters, and an unknown field would turn
  // every call into a 400. They still count in the stage version upstream.
  return body;
}

/** A message (realtime response or batch result) as a sluice result. */
export function fromMessage(msg: Message, requestId?: string): CompletionResult {
  const toolUse = msg.content.find((b) => b.type === "tool_use");
  const prose = msg.content.map((b) => (b.type === "text" ? b.text : "")).join("");
  let finishReason: FinishReason = "stop";
  if (msg.stop_reason === "refusal") finishReason = "refusal";
  else if (msg.stop_reason === "max_tokens" || msg.stop_reason === "model_context_window_exceeded") finishReason = "length";
  const cacheRead = msg.usage.cache_read_input_tokens ?? 0;
  const cacheWrite = msg.usage.cache_creation_input_tokens ?? 0;
  const result: CompletionResult = {
    text: toolUse && toolUse.type === "tool_use" ? JSON.stringify(toolUse.input) : prose,
    finishReason,
    usage: {
      // Anthropic's `input_tokens` leaves out cached tokens; sluice counts all input, as OpenAI does.
      inputTokens: msg.usage.input_tokens + cacheRead + cacheWrite,
      outputTokens: msg.usage.output_tokens,
      cachedInputTokens: cacheRead,
    },
    model: msg.model,
  };
  if (finishReason === "refusal") result.refusal = prose || "refused";
  if (requestId) result.requestId = requestId;
  return result;
}
