import OpenAI from "openai";
import type { ClientSettings } from "../adapter.ts";
import { sdkFetch } from "../transport.ts";

/**
 * The official OpenAI client, pointed at the real API or at sluice's simulator
 * (`baseURL http://127.0.0.1:<port>/v1`).
 *
 * @example
 * const client = createClient({ apiKey: "sk-...", timeoutMs: 60_000 });
 */
export function createClient(settings: ClientSettings): OpenAI {
  return new OpenAI({
    apiKey: settings.apiKey,
    baseURL: settings.baseURL,
    timeout: settings.timeoutMs,
    // The engine owns retries (with backoff, jitter and `retry-after`); SDK
    // retries on top would multiply attempts and hide 429s from the limiter.
    maxRetries: 0,
    // SDK log lines could echo request options; sluice logs through its own logger.
    logLevel: "off",
    // undici's fetch with sluice's answer tap: answers are journaled as they arrive (see transport.ts).
    fetch: sdkFetch,
  });
}

export type OpenAIClient = OpenAI;
