/** Message Batches limits: 100,000 requests and 256 MB per batch. */
export const ANTHROPIC_BATCH_LIMITS = { maxRequests: 100_000, maxBytes: 256 * 1024 * 1024 } as const;
