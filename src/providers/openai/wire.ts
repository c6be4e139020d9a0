// The openai wire shapes, as plain functions: no SDK code is loaded here, so the
// engine's HTTP tap (transport.ts) can read answers without loading the SDK.
import type { ChatCompletion, ChatCompletionCreateParamsNonStreaming, ChatCompletionMessageParam } from "openai/resources/chat/completions";
import { safeName } from "../adapter.ts";
import type { CompletionRequest, CompletionResult, FinishReason } from "../types.ts";


/**
 * A sluice request as a chat completions body. Used as is for realtime calls
 * and as the `body` of each batch line, so both modes ask the same question.
 */
export function toChatBody(req: CompletionRequest): ChatCompletionCreateParamsNonStreaming {
  const messages: ChatCompletionMessageParam[] = [];
  if (req.system) messages.push({ role: "system", content: req.system });
  for (const m of req.messages) messages.push({ role: m.role, content: m.content });
  const body: ChatCompletionCreateParamsNonStreaming = {
    model: req.model,
    messages,
    response_format: {
      type: "json_schema",
      json_schema: { name: safeName(req.schema.name), schema: req.schema.schema, strict: true },
    },
  };
  const p = req.params;
  if (p.temperature !== undefined) body.temperature = p.temperature;
  if (p.topP !== undefined) body.top_p = p.topP;
  if (p.maxTokens !== undefined) body.max_completion_tokens = p.maxTokens;
  return body;
}

/** A chat completion (realtime response or batch line body) as a sluice result. */
export function fromChatCompletion(data: ChatCompletion, requestId?: string): CompletionResult {
  const choice = data.choices[0];
  const message = choice?.message;
  const refusal = message?.refusal ?? undefined;
  let finishReason: FinishReason = "stop";
  if (refusal) finishReason = "refusal";
  else if (choice?.finish_reason === "length") finishReason = "length";
  else if (choice?.finish_reason === "content_filter") finishReason = "content_filter";
  const result: CompletionResult = {
    text: message?.content ?? "",
    finishReason,
    usage: {
      inputTokens: data.usage?.prompt_tokens ?? 0,
      outputTokens: data.usage?.completion_tokens ?? 0,
      cachedInputTokens: data.usage?.prompt_tokens_details?.cached_tokens ?? 0,
    },
    model: data.model,
  };
  if (refusal) result.refusal = refusal;
  if (requestId) result.requestId = requestId;
  return result;
}
