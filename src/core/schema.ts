import { z } from "zod";
import { byDefinition } from "./definition-cache.ts";
import { hashValue } from "./hash.ts";
import type { JsonSchema } from "./types.ts";

export type SchemaCheck<T = unknown> = { ok: true; value: T } | { ok: false; errors: string[] };
export type Checker<T = unknown> = (value: unknown) => SchemaCheck<T>;

const cache = new Map<string, Checker>();
/** The same schema object is checked against for every item: found without hashing it again (see definition-cache.ts). */
const bySchemaObject = new WeakMap<object, { generation: number; value: Checker }>();

/**
 * A runtime checker for a JSON Schema (the schemas in `schemas/` are the single
 * source; zod builds the check from them). Cached by schema content.
 */
export function compileSchema<T = unknown>(schema: JsonSchema): Checker<T> {
  return byDefinition(bySchemaObject, schema as object, () => compileByContent(schema)) as Checker<T>;
}

function compileByContent(schema: JsonSchema): Checker {
  const key = hashValue(schema);
  let check = cache.get(key);
  if (!check) {
    const zodSchema = z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]);
    check = (value: unknown) => {
      const parsed = zodSchema.safeParse(value);
      if (parsed.success) return { ok: true, value: parsed.data };
      return {
        ok: false,
        errors: parsed.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`),
      };
    };
    cache.set(key, check);
  }
  return check;
}
