import type { ClientSettings, VendorAdapter } from "../adapter.ts";
import { OpenAIBatchApi } from "./batch.ts";
import { createClient } from "./client.ts";
import { callChat } from "./realtime.ts";

/**
 * The OpenAI adapter: chat completions with structured outputs (realtime) and
 * the Batch API, behind sluice's vendor-neutral shapes.
 *
 * @example
 * const adapter = openaiAdapter({ apiKey, timeoutMs: 60_000 }, redact);
 */
export function openaiAdapter(settings: ClientSettings, redact: (text: string) => string): VendorAdapter {
  const client = createClient(settings);
  return {
    name: "openai",
    call: (request, signal) => callChat(client, request, redact, signal),
    batch: new OpenAIBatchApi(client, redact),
  };
}

export { OPENAI_BATCH_LIMITS } from "./batch-limits.ts";
