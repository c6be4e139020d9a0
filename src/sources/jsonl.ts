import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import type { SourceSpec } from "../core/types.ts";
import { ItemChecks, preview } from "./checks.ts";
import { RAW_PREVIEW_CHARS, type SourceRecord } from "./types.ts";

// The file is read as latin1, which maps every byte to one character: strings
// below are bytes in disguise until decoded, so invalid UTF-8 is caught, not replaced.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const NON_ASCII = /[\x80-\xff]/;
const LATIN1_BOM = "\xef\xbb\xbf";

function decodeStrict(bytes: string): string | undefined {
  // Pure ASCII reads the same in latin1 and UTF-8: the common case pays nothing.
  if (!NON_ASCII.test(bytes)) return bytes;
  try {
    return utf8.decode(Buffer.from(bytes, "latin1"));
  } catch {
    return undefined;
  }
}

const decodeLoose = (bytes: string) => Buffer.from(bytes, "latin1").toString("utf8");

/**
 * Stream a JSON Lines file (one JSON object per line) as source records.
 * Blank lines are skipped; a line that is not valid UTF-8, not JSON, or not an
 * object is quarantined with the reason.
 *
 * @example
 * for await (const rec of readJsonl("tickets.jsonl", { key: "id" })) {
 *   if (rec.kind === "item") console.log(rec.itemId);
 * }
 */
export async function* readJsonl(path: string, spec: SourceSpec, signal?: AbortSignal, findDuplicates = true): AsyncGenerator<SourceRecord> {
  const input = createReadStream(path, { encoding: "latin1" });
  const lines = createInterface({ input, crlfDelay: Infinity });
  // readline does not surface a read error (missing file) to its iterator; this does.
  let readError: unknown;
  input.once("error", (err) => {
    readError = err;
    lines.close();
  });
  const checks = new ItemChecks(spec, false, findDuplicates);
  let lineNo = 0;
  try {
    for await (const text of lines) {
      signal?.throwIfAborted();
      lineNo++;
      const bytes = lineNo === 1 && text.startsWith(LATIN1_BOM) ? text.slice(LATIN1_BOM.length) : text;
      if (bytes.trim() === "") continue;
      yield checkLine(lineNo, bytes, spec.key, checks);
    }
  } finally {
    lines.close();
    input.destroy();
  }
  if (readError) throw readError;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function checkLine(line: number, bytes: string, key: string, checks: ItemChecks): SourceRecord {
  const raw = () => decodeLoose(bytes.slice(0, 4 * RAW_PREVIEW_CHARS));
  const bad = (reason: string, itemId?: string): SourceRecord => ({ kind: "bad", line, ...(itemId ? { itemId } : {}), reason, raw: preview(raw()) });

  const text = decodeStrict(bytes);
  if (text === undefined) return bad("invalid UTF-8 (the line is not valid UTF-8 text)");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return bad(`invalid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return bad(`expected a JSON object, got ${describe(value)}`);
  }
  const item = value as Record<string, unknown>;
  const id = item[key];
  if (id === undefined || id === null) return bad(`missing id (field ${JSON.stringify(key)} is absent)`);
  if (typeof id !== "string" && typeof id !== "number") {
    return bad(`id field ${JSON.stringify(key)} must be a string or a number, got ${describe(id)}`);
  }
  const itemId = String(id).trim();
  if (itemId === "") return bad(`missing id (field ${JSON.stringify(key)} is empty)`);
  if (typeof id === "string") item[key] = itemId;
  return checks.verdict(line, itemId, item, raw);
}
