import type { VendorCall } from "../adapter.ts";
import type { CompletionRequest } from "../types.ts";
import type { AnthropicClient } from "./client.ts";
import { mapError } from "./errors.ts";
import { rateFromHeaders } from "./headers.ts";
import { fromMessage, toMessageBody } from "./wire.ts";

export { DEFAULT_MAX_TOKENS, toMessageBody, fromMessage } from "./wire.ts";

/**
 * One realtime call. Provider failures come back classified, never thrown, with
 * the rate-limit headers of whatever response there was.
 */
export async function callMessages(
  client: AnthropicClient,
  req: CompletionRequest,
  redact: (text: string) => string,
  signal?: AbortSignal,
): Promise<VendorCall> {
  try {
    const { data, response, request_id } = await client.messages.create(toMessageBody(req), { signal }).withResponse();
    return { ok: true, result: fromMessage(data, request_id ?? undefined), rate: rateFromHeaders(response.headers) };
  } catch (err) {
    return { ok: false, ...mapError(err, redact) };
  }
}
