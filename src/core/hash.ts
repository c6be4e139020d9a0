import * as crypto from "node:crypto";

/**
 * JSON with object keys sorted at every depth, so equal values hash equally
 * whatever order their keys were built in. `undefined` members are dropped, as
 * JSON.stringify does.
 *
 * Written out directly (no sorted copy of the value is built), and byte for
 * byte what `JSON.stringify` gives for a copy whose objects were rebuilt with
 * their keys inserted in sorted order: stored hashes depend on it. That
 * includes JSON's own key order, integer-like keys first in numeric order, and
 * that an object's `toJSON` is not consulted (a Date is `{}`).
 */
export function stableStringify(value: unknown): string {
  return write(value, false) ?? (undefined as unknown as string);
}

function write(value: unknown, inArray: boolean): string | undefined {
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
    case "bigint":
      return JSON.stringify(value);
    case "undefined":
    case "function":
    case "symbol":
      return inArray ? "null" : undefined;
  }
  if (value === null) return "null";
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) out += (i ? "," : "") + write(value[i], true);
    return `${out}]`;
  }
  const object = value as Record<string, unknown>;
  let out = "{";
  let first = true;
  for (const key of jsonKeyOrder(Object.keys(object).sort())) {
    const v = object[key];
    // Assigning "__proto__" on a plain object sets its prototype: never a member.
    if (v === undefined || key === "__proto__") continue;
    const member = write(v, false);
    if (member === undefined) continue;
    out += `${first ? "" : ","}${JSON.stringify(key)}:${member}`;
    first = false;
  }
  return `${out}}`;
}

const ARRAY_INDEX = /^(?:0|[1-9]\d{0,9})$/;

/** Property order of an object whose keys were inserted in `sorted` order: array-index keys first, ascending, then the rest as inserted. */
function jsonKeyOrder(sorted: string[]): string[] {
  let indexes: string[] | undefined;
  for (const key of sorted) if (ARRAY_INDEX.test(key) && Number(key) < 4294967295) (indexes ??= []).push(key);
  if (!indexes) return sorted;
  const isIndex = new Set(indexes);
  return [...indexes.sort((a, b) => Number(a) - Number(b)), ...sorted.filter((k) => !isIndex.has(k))];
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
