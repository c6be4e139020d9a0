import type { VendorCall } from "../adapter.ts";
import type { CompletionRequest } from "../types.ts";
import type { OpenAIClient } from "./client.ts";
import { mapError } from "./errors.ts";
import { rateFromHeaders } from "./headers.ts";
import { fromChatCompletion, toChatBody } from "./wire.ts";

export { toChatBody, fromChatCompletion } from "./wire.ts";

/**
 * One realtime call. Provider failures come back classified, never thrown, with
 * the rate-limit headers of whatever response there was.
 */
export async function callChat(
  client: OpenAIClient,
  req: CompletionRequest,
  redact: (text: string) => string,
  signal?: AbortSignal,
): Promise<VendorCall> {
  try {
    const { data, response, request_id } = await client.chat.completions
      .create(toChatBody(req), { signal })
      .withResponse();
    return {
      ok: true,
      result: fromChatCompletion(data, request_id ?? undefined),
      rate: rateFromHeaders(response.headers),
    };
  } catch (err) {
    return { ok: false, ...mapError(err, redact) };
  }
}
