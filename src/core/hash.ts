import * as crypto from "node:crypto";

/**
 * JSON with object keys sorted at every depth, so equal values hash equally
 * whatever order their keys were built in. `undefined` members are dropped, as
 * JSON.stringify does.
 */
export function stableStringify(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
}

// One-shot hashing where Node has it (20.12+): no Hash object per call.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: "hex") => string }).hash;

export function sha256(text: string): string {
  return oneShot ? oneShot("sha256", text, "hex") : crypto.createHash("sha256").update(text).digest("hex");
}

/** Short, stable content hash of any JSON-like value. */
export function hashValue(value: unknown, length = 16): string {
  return sha256(stableStringify(value)).slice(0, length);
}
