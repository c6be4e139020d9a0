import type { ClientSettings, VendorAdapter } from "../adapter.ts";
import { AnthropicBatchApi } from "./batch.ts";
import { createClient } from "./client.ts";
import { callMessages } from "./realtime.ts";

/**
 * The Anthropic adapter: messages with a forced tool for structured output
 * (realtime) and Message Batches, behind sluice's vendor-neutral shapes.
 *
 * @example
 * const adapter = anthropicAdapter({ apiKey, timeoutMs: 60_000 }, redact);
 */
export function anthropicAdapter(settings: ClientSettings, redact: (text: string) => string): VendorAdapter {
  const client = createClient(settings);
  return {
    name: "anthropic",
    call: (request, signal) => callMessages(client, request, redact, signal),
    batch: new AnthropicBatchApi(client, redact),
  };
}

export { ANTHROPIC_BATCH_LIMITS } from "./batch-limits.ts";
