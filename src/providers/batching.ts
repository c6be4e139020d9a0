import { DeterministicError } from "../core/errors.ts";
import type { CompletionRequest } from "./types.ts";

export interface BatchLimits {
  maxRequests: number;
  maxBytes: number;
}

export interface PackOptions extends BatchLimits {
  /**
   * Bytes one request takes in the provider's batch body. The default is its
   * JSON plus `PER_REQUEST_OVERHEAD` for the vendor's wrapping (custom_id, url,
   * response_format or tool), which is always larger than the real growth.
   */
  sizeOf?: (request: CompletionRequest) => number;
}

/** Bytes a vendor's batch line adds around a request's own JSON; generous on purpose. */
export const PER_REQUEST_OVERHEAD = 512;

export function defaultSizeOf(request: CompletionRequest): number {
  return Buffer.byteLength(JSON.stringify(request), "utf8") + PER_REQUEST_OVERHEAD;
}

/**
 * Split requests into groups that each fit one provider batch, by count and by
 * serialized bytes, keeping their order. A request too large for any batch on
 * its own gets a group of its own, so `submit` rejects just that one with a
 * DeterministicError instead of the packer refusing everything.
 *
 * @example
 * const groups = packBatches(requests, provider.batch!); // uses maxRequests / maxBytes
 * for (const g of groups) await provider.batch!.submit(g);
 */
export function packBatches(requests: readonly CompletionRequest[], opts: PackOptions): CompletionRequest[][] {
  if (!(opts.maxRequests >= 1) || !(opts.maxBytes >= 1)) throw new RangeError("packBatches: limits must be positive");
  const sizeOf = opts.sizeOf ?? defaultSizeOf;
  const groups: CompletionRequest[][] = [];
  let group: CompletionRequest[] = [];
  let bytes = 0;
  for (const r of requests) {
    const size = sizeOf(r);
    if (group.length > 0 && (group.length >= opts.maxRequests || bytes + size > opts.maxBytes)) {
      groups.push(group);
      group = [];
      bytes = 0;
    }
    group.push(r);
    bytes += size;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

const CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;

/**
 * What every vendor checks before uploading a batch; a bad batch never reaches the provider.
 *
 * @example
 * checkBatch("openai", requests, Buffer.byteLength(jsonl), { maxRequests: 50_000, maxBytes: 200 * 1024 * 1024 });
 */
export function checkBatch(provider: string, requests: readonly CompletionRequest[], bytes: number, limits: BatchLimits): void {
  if (requests.length === 0) throw new DeterministicError(`${provider}: a batch needs at least one request`);
  if (requests.length > limits.maxRequests) {
    throw new DeterministicError(`${provider}: ${requests.length} requests exceed the batch limit of ${limits.maxRequests}; use packBatches`);
  }
  if (bytes > limits.maxBytes) {
    throw new DeterministicError(`${provider}: batch body of ${bytes} bytes exceeds the limit of ${limits.maxBytes}; use packBatches`);
  }
  const ids = new Set<string>();
  for (const r of requests) {
    if (!CUSTOM_ID.test(r.customId)) throw new DeterministicError(`${provider}: custom id "${r.customId}" must match ${CUSTOM_ID}`);
    if (ids.has(r.customId)) throw new DeterministicError(`${provider}: custom id "${r.customId}" appears twice in one batch`);
    ids.add(r.customId);
  }
}

/** How far a provider's clock may run behind this machine's when a batch is looked for by its creation time. */
export const CLOCK_SKEW_S = 120;
