/**
 * Values as the store gives them back. A stage's output is written as jsonb
 * and read back by later stages; when a chunk carries it to the next stage in
 * memory instead, that stage must see exactly what a read would have given
 * it: JSON's rules applied (`toJSON`, no `undefined` members, non-finite
 * numbers as null) and object keys in jsonb's order (shorter keys first, then
 * by their UTF-8 bytes).
 */
export function storedForm(value: unknown): unknown {
  if (value === undefined) return null;
  return canonical(value) ? value : reorder(JSON.parse(JSON.stringify(value) ?? "null"));
}

/** True when the value is plain JSON already in the stored form (most outputs are): nothing to copy. */
function canonical(value: unknown): boolean {
  if (value === null || typeof value === "string" || typeof value === "boolean") return true;
  if (typeof value === "number") return Number.isFinite(value) && !Object.is(value, -0);
  if (Array.isArray(value)) return value.every(canonical);
  if (typeof value !== "object" || Object.getPrototypeOf(value) !== Object.prototype) return false;
  const keys = Object.keys(value);
  for (let i = 0; i < keys.length; i++) {
    if (i > 0 && jsonbKeyOrder(keys[i - 1]!, keys[i]!) > 0) return false;
    if (!canonical((value as Record<string, unknown>)[keys[i]!])) return false;
  }
  return true;
}

function reorder(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reorder);
  if (value === null || typeof value !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort(jsonbKeyOrder)) out[key] = reorder((value as Record<string, unknown>)[key]);
  return out;
}

function jsonbKeyOrder(a: string, b: string): number {
  const ba = Buffer.from(a);
  const bb = Buffer.from(b);
  return ba.length - bb.length || Buffer.compare(ba, bb);
}

/** Freeze a JSON-like value and everything in it: stage inputs are read, not changed. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const member of Object.values(value)) deepFreeze(member);
  }
  return value;
}
