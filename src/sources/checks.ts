import { sha256, stableStringify } from "../core/hash.ts";
import { compileSchema, type Checker } from "../core/schema.ts";
import type { JsonSchema, SourceSpec } from "../core/types.ts";
import { DEFAULT_MAX_ITEM_BYTES, RAW_PREVIEW_CHARS, type SourceRecord } from "./types.ts";

const fmt = new Intl.NumberFormat("en-US");

/** At most ~500 characters of a row, without its line ending, for a person to look at. */
export function preview(text: string): string {
  const trimmed = text.replace(/\r?\n$|\r$/, "");
  return trimmed.length > RAW_PREVIEW_CHARS ? `${trimmed.slice(0, RAW_PREVIEW_CHARS)}…` : trimmed;
}

/** Why a row whose id an earlier row has, with different content, is quarantined. */
export function conflictingDuplicateReason(itemId: string, firstLine: number): string {
  return `duplicate id ${JSON.stringify(itemId)} with content different from line ${firstLine}; the first row is kept`;
}

/** Why a row identical to an earlier one (same id, same content) is not processed again. */
export function duplicateReason(itemId: string, firstLine: number): string {
  return `identical to line ${firstLine} (same id "${itemId}", same content); processed once`;
}

/** The `required` list of an object schema, or none. */
export function requiredFields(schema: JsonSchema | undefined): string[] {
  const req = schema?.required;
  return Array.isArray(req) ? req.filter((f): f is string => typeof f === "string") : [];
}

/**
 * The checks every format shares once a row has become an item with an id:
 * size, schema, then duplicate ids. Only ids and content hashes are kept
 * (never rows), so memory grows with the number of distinct ids, not bytes.
 */
export class ItemChecks {
  private readonly maxBytes: number;
  private readonly check?: Checker;
  private readonly required: string[];
  private readonly seen: SeenIds | undefined;

  /**
   * @param emptyIsMissing CSV has no null: an empty cell in a required column counts as missing.
   * @param findDuplicates false: no id is remembered, and finding rows with an id seen before is the caller's (see `ReadSourceOptions`).
   */
  constructor(spec: SourceSpec, emptyIsMissing: boolean, findDuplicates = true) {
    this.seen = findDuplicates ? new SeenIds() : undefined;
    this.maxBytes = spec.maxItemBytes ?? DEFAULT_MAX_ITEM_BYTES;
    if (spec.schema) this.check = compileSchema(spec.schema);
    this.required = emptyIsMissing ? requiredFields(spec.schema) : [];
  }

  /** `raw` is called only when the row is quarantined, so good rows pay nothing for it. */
  verdict(line: number, itemId: string, item: Record<string, unknown>, raw: () => string): SourceRecord {
    // Sorting keys changes no character count, so one serialization gives both the
    // size (as JSON.stringify would measure it) and hashValue(item), which is sha256 of it.
    const json = stableStringify(item);
    const bytes = Buffer.byteLength(json);
    if (bytes > this.maxBytes) {
      const reason = `item is ${fmt.format(bytes)} bytes, over the ${fmt.format(this.maxBytes)}-byte limit (source.maxItemBytes)`;
      return { kind: "bad", line, itemId, reason, raw: preview(raw()) };
    }
    const reason = this.schemaProblem(item);
    if (reason) return { kind: "bad", line, itemId, reason, raw: preview(raw()) };

    const contentHash = sha256(json).slice(0, 16);
    if (!this.seen) return { kind: "item", line, itemId, item, bytes, contentHash, raw };
    const first = this.seen.get(itemId);
    if (!first) {
      this.seen.add(itemId, contentHash, line);
      return { kind: "item", line, itemId, item, bytes, contentHash };
    }
    if (first.hash === SeenIds.hashKey(contentHash)) return { kind: "duplicate", line, itemId, firstLine: first.line };
    return {
      kind: "bad",
      line,
      itemId,
      reason: conflictingDuplicateReason(itemId, first.line),
      raw: preview(raw()),
    };
  }

  private schemaProblem(item: Record<string, unknown>): string | undefined {
    const empty = this.required.filter((f) => item[f] === "");
    if (empty.length === 1) return `empty required field ${empty[0]}`;
    if (empty.length > 1) return `empty required fields ${empty.join(", ")}`;
    if (!this.check) return undefined;
    const result = this.check(item);
    return result.ok ? undefined : `does not match the item schema: ${result.errors.join("; ")}`;
  }
}

/**
 * id -> (content hash, first line), packed: one small Map entry per id plus two
 * numbers in typed arrays, about a third of the memory of an object per id.
 * Only rows with the same id are ever compared, so 52 bits of hash are plenty.
 */
class SeenIds {
  private readonly index = new Map<string, number>();
  private hashes: Float64Array = new Float64Array(1024);
  private lines: Float64Array = new Float64Array(1024);

  static hashKey(contentHash: string): number {
    return parseInt(contentHash.slice(0, 13), 16);
  }

  get(id: string): { hash: number; line: number } | undefined {
    const at = this.index.get(id);
    return at === undefined ? undefined : { hash: this.hashes[at]!, line: this.lines[at]! };
  }

  add(id: string, contentHash: string, line: number): void {
    const at = this.index.size;
    if (at === this.hashes.length) {
      this.hashes = grow(this.hashes);
      this.lines = grow(this.lines);
    }
    this.hashes[at] = SeenIds.hashKey(contentHash);
    this.lines[at] = line;
    this.index.set(id, at);
  }
}

function grow(a: Float64Array): Float64Array {
  const bigger = new Float64Array(a.length * 2);
  bigger.set(a);
  return bigger;
}
