import { DefinitionError } from "./errors.ts";
import type { JsonSchema } from "./types.ts";

/**
 * Typed commit targets: a commit stage may declare its target's columns as a
 * JSON Schema of the row (`target.columns`); each property becomes a column
 * of the SQL type below, instead of one `data jsonb`. No I/O here: the store
 * creates and migrates the table (`store/targets.ts`).
 */

export interface TargetColumn {
  name: string;
  /** The Postgres type the column is created with. */
  sqlType: string;
}

/** Columns every target has, kept by sluice: a row's columns cannot use these names. */
export const BOOKKEEPING_COLUMNS = ["key", "item_id", "data", "status", "run_id", "stage_version", "committed_at", "withdrawn_at"] as const;

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** A target table name: `table` or `schema.table`, each a plain lowercase SQL identifier. */
export function checkTableName(name: string): string | undefined {
  const parts = name.split(".");
  if (parts.length > 2 || !parts.every((p) => IDENTIFIER.test(p))) return `target.table must be a plain lowercase SQL identifier, or schema.table ("${name}")`;
  return undefined;
}

/**
 * A target in another database is named by a Postgres URL. Returns what is
 * wrong with it, never echoing the URL (it may hold a password).
 */
export function checkTargetUrl(url: unknown): string | undefined {
  if (url === undefined) return undefined;
  if (typeof url !== "string" || url === "") return "target.url is empty (is the environment variable it reads set?)";
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "target.url is not a URL: give a Postgres URL (postgres://user:password@host:5432/database)";
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") return `target.url must be a Postgres URL (postgres:// or postgresql://), not ${parsed.protocol}//`;
  if (!parsed.pathname || parsed.pathname === "/") return "target.url names no database (postgres://host:5432/database)";
  return undefined;
}

/** A target URL as it may be shown or stored: the user kept, the password left out. */
export function publicTargetUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = "";
    return parsed.toString();
  } catch {
    return "(invalid url)";
  }
}

/** The columns a row schema declares, in its order, with their SQL types; throws what is wrong with it. */
export function targetColumns(columns: JsonSchema, key: string): TargetColumn[] {
  const props = (columns as { type?: unknown; properties?: Record<string, JsonSchema> }).properties;
  if (!props || typeof props !== "object" || Object.keys(props).length === 0) {
    throw new DefinitionError("target.columns must be a JSON Schema of the row: an object schema with properties");
  }
  if (!(key in props)) throw new DefinitionError(`target.columns must include the key "${key}"`);
  return Object.entries(props).map(([name, schema]) => {
    if (!IDENTIFIER.test(name)) throw new DefinitionError(`target column "${name}" must be a plain lowercase SQL identifier`);
    if ((BOOKKEEPING_COLUMNS as readonly string[]).includes(name)) throw new DefinitionError(`target column "${name}" is a name sluice keeps for itself (${BOOKKEEPING_COLUMNS.join(", ")})`);
    return { name, sqlType: sqlTypeOf(name, schema) };
  });
}

function sqlTypeOf(name: string, schema: JsonSchema): string {
  const s = schema as { type?: string | string[]; format?: string; enum?: unknown[] };
  const types = (Array.isArray(s.type) ? s.type : s.type ? [s.type] : []).filter((t) => t !== "null");
  if (types.length === 0 && Array.isArray(s.enum)) return s.enum.every((v) => typeof v === "string" || v === null) ? "text" : "jsonb";
  if (types.length !== 1) throw new DefinitionError(`target column "${name}" needs one JSON type (besides null), got ${JSON.stringify(s.type ?? null)}`);
  switch (types[0]) {
    case "string":
      return s.format === "date-time" ? "timestamptz" : s.format === "date" ? "date" : "text";
    case "integer":
      return "bigint";
    case "number":
      return "double precision";
    case "boolean":
      return "boolean";
    case "object":
    case "array":
      return "jsonb";
    default:
      throw new DefinitionError(`target column "${name}" has an unsupported type ${JSON.stringify(types[0])}`);
  }
}

const byTarget = new WeakMap<object, TargetColumn[] | undefined>();

/** A commit stage's typed columns (undefined: rows kept as `data jsonb`), worked out once per definition. */
export function columnsOf(target: { key: string; columns?: JsonSchema }): TargetColumn[] | undefined {
  if (!target.columns) return undefined;
  if (!byTarget.has(target)) byTarget.set(target, targetColumns(target.columns, target.key));
  return byTarget.get(target);
}
