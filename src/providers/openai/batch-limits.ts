/** OpenAI Batch API limits: 50,000 requests and 200 MB of JSONL per batch. */
export const OPENAI_BATCH_LIMITS = { maxRequests: 50_000, maxBytes: 200 * 1024 * 1024 } as const;
