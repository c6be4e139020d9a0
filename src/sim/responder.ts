import { countRepeatedTokens, countTokens } from "../core/tokens.ts";
import { sha256 } from "../core/hash.ts";
import type { JsonSchema } from "../core/types.ts";

/**
 * The deterministic responder behind the simulator and the in-process
 * provider: the answer is a pure function of the prompt text and the requested
 * JSON Schema, schema-valid, and plausible (labels follow keywords in the text,
 * fields are pulled out of it with patterns). The same request always gets the
 * same answer and the same token counts.
 */
export interface RespondInput {
  system?: string;
  /** The user turn(s), joined. */
  text: string;
  schema: JsonSchema;
}

export interface Respond {
  value: unknown;
  json: string;
  inputTokens: number;
  outputTokens: number;
}

/** Words that point at an enum value, beyond the value's own words. */
const CUES: Record<string, string[]> = {
  billing: ["invoice", "charged", "charge", "billing", "bill", "payment", "subscription", "pricing", "vat", "receipt", "card"],
  refund: ["refund", "money back", "reimburse", "return", "chargeback", "cancel my order", "credit back"],
  bug: ["error", "crash", "crashes", "broken", "bug", "fails", "failing", "not working", "exception", "500", "freezes", "stack trace"],
  how_to: ["how do i", "how to", "how can i", "where can i", "is it possible", "guide", "tutorial", "documentation", "set up", "configure"],
  account: ["password", "login", "log in", "sign in", "account", "2fa", "two-factor", "locked out", "username", "email address"],
  critical: ["outage", "down for everyone", "data loss", "all users", "production down", "security"],
  high: ["crash", "cannot", "can't", "blocked", "urgent", "fails"],
  medium: ["error", "wrong", "slow", "broken"],
  low: ["typo", "cosmetic", "minor", "sometimes"],
  positive: ["great", "love", "thanks", "excellent", "happy"],
  negative: ["angry", "terrible", "worst", "unacceptable", "disappointed"],
  // A CRM record: does it need enriching, and what kind of company is it.
  enrich: ["missing", "unknown", "outdated", "stale", "vague", "new lead"],
  skip: ["verified", "complete", "current"],
  software: ["software", "cloud", "api", "saas", "platform"],
  fintech: ["payments", "lending", "banking", "fintech", "insurance"],
  healthcare: ["clinic", "patient", "health", "medical", "pharma"],
  retail: ["apparel", "online store", "retail", "shops", "e-commerce"],
  logistics: ["freight", "shipping", "delivery", "fleets", "logistics", "warehouse"],
  manufacturing: ["factory", "manufacturing", "industrial", "parts"],
  education: ["courses", "tutoring", "school", "learning", "students"],
  b2b: ["businesses", "enterprise", "teams", "companies"],
  b2c: ["consumers", "households", "shoppers"],
  marketplace: ["buyers and sellers", "sellers"],
};

function cuesFor(value: string): string[] {
  const own = value.toLowerCase().split(/[_\s-]+/).filter((w) => w.length > 2);
  return [...own, ...(CUES[value.toLowerCase()] ?? [])];
}

function countCue(text: string, cue: string): number {
  let n = 0;
  for (let at = text.indexOf(cue); at !== -1; at = text.indexOf(cue, at + cue.length)) {
    const before = at === 0 ? " " : text[at - 1]!;
    const after = text[at + cue.length] ?? " ";
    if (!/[a-z0-9]/.test(before) && !/[a-z0-9]/.test(after)) n++;
  }
  return n;
}

/** Deterministic number in [0, 1) from a seed string. */
export function unitHash(seed: string): number {
  return parseInt(sha256(seed).slice(0, 8), 16) / 0x1_0000_0000;
}

export interface EnumChoice {
  value: string;
  /** Share of the keyword evidence held by the winner: the basis of `confidence`. */
  margin: number;
}

export function chooseEnum(values: readonly string[], text: string, seed: string): EnumChoice {
  const lower = text.toLowerCase();
  let best: string | undefined;
  let bestScore = 0;
  let total = 0;
  for (const value of values) {
    const score = cuesFor(value).reduce((sum, cue) => sum + countCue(lower, cue), 0);
    total += score;
    if (score > bestScore) {
      best = value;
      bestScore = score;
    }
  }
  if (best !== undefined) return { value: best, margin: bestScore / total };
  const fallback = values.includes("other") ? "other" : values[Math.floor(unitHash(seed) * values.length)]!;
  return { value: fallback, margin: 0 };
}

const PATTERNS: { test: RegExp; find: RegExp; kind: "string" | "number" }[] = [
  { test: /order/i, find: /\b(?:ORD|order)[\s#:-]*([A-Z0-9-]{4,})/i, kind: "string" },
  { test: /invoice/i, find: /\b(?:INV|invoice)[\s#:-]*([A-Z0-9-]{4,})/i, kind: "string" },
  { test: /amount|price|total/i, find: /[$€£]\s?(\d[\d,]*(?:\.\d{1,2})?)|(\d[\d,]*(?:\.\d{1,2})?)\s?(?:USD|EUR|GBP|dollars|euros)/i, kind: "number" },
  { test: /email/i, find: /([\w.+-]+@[\w-]+\.[\w.-]+)/, kind: "string" },
  { test: /employee|headcount|staff/i, find: /(\d[\d,]*)\s+(?:employees|staff|people)\b/i, kind: "number" },
  { test: /founded|year/i, find: /\b(?:founded|established|since)\s+(?:in\s+)?((?:18|19|20)\d\d)\b/i, kind: "number" },
  { test: /headquarters|city/i, find: /\b(?:based in|headquartered in|offices in)\s+([A-Z][\w-]+(?:\s[A-Z][\w-]+)?)/, kind: "string" },
  { test: /product/i, find: /\b(?:using|with|in|on|for|the)\s+(Sluice\s?\w+|[A-Z][a-z]+(?:\s?[A-Z][a-z]+)?\s(?:app|plan|Pro|Cloud|Mobile|Desktop|API))/, kind: "string" },
];

function firstWords(text: string, n: number): string {
  return text.replace(/\s+/g, " ").trim().split(" ").slice(0, n).join(" ");
}

function typesOf(schema: JsonSchema): string[] {
  const t = schema.type;
  if (Array.isArray(t)) return t as string[];
  if (typeof t === "string") return [t];
  if (Array.isArray(schema.enum)) return ["enum"];
  if (schema.properties) return ["object"];
  return ["string"];
}

function generate(schema: JsonSchema, name: string, text: string, seed: string, ctx: { margin: number }): unknown {
  if (Array.isArray(schema.enum)) {
    const choice = chooseEnum(schema.enum as string[], text, `${seed}:${name}`);
    if (choice.margin > 0 || ctx.margin === 0) ctx.margin = Math.max(ctx.margin, choice.margin);
    return choice.value;
  }
  if (Array.isArray(schema.anyOf)) return generate(schema.anyOf[0] as JsonSchema, name, text, seed, ctx);
  const types = typesOf(schema);
  const nullable = types.includes("null");
  const type = types.find((t) => t !== "null") ?? "null";
  if (type === "null") return null;
  if (type === "object") {
    const out: Record<string, unknown> = {};
    const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
    // Enums first, so `confidence` can reflect how clear the label was.
    const names = Object.keys(props).sort((a, b) => Number(!props[a]!.enum) - Number(!props[b]!.enum));
    for (const key of names) out[key] = generate(props[key]!, key, text, seed, ctx);
    return Object.fromEntries(Object.keys(props).map((k) => [k, out[k]]));
  }
  if (type === "array") {
    const items = (schema.items ?? { type: "string" }) as JsonSchema;
    const min = typeof schema.minItems === "number" ? schema.minItems : 0;
    return Array.from({ length: Math.max(min, 1) }, (_, i) => generate(items, `${name}[${i}]`, text, seed, ctx));
  }
  if (type === "boolean") return unitHash(`${seed}:${name}`) < 0.5;
  if (type === "number" || type === "integer") {
    if (/confidence|score|probability/i.test(name)) {
      const c = 0.55 + 0.4 * ctx.margin + 0.04 * unitHash(`${seed}:${name}`);
      return Math.round(Math.min(c, 0.99) * 100) / 100;
    }
    for (const p of PATTERNS) {
      if (p.kind === "number" && p.test.test(name)) {
        const m = text.match(p.find);
        const raw = m?.[1] ?? m?.[2];
        if (raw) return Number(raw.replace(/,/g, ""));
        if (nullable) return null;
      }
    }
    const min = typeof schema.minimum === "number" ? schema.minimum : 0;
    const max = typeof schema.maximum === "number" ? schema.maximum : 100;
    const v = min + unitHash(`${seed}:${name}`) * (max - min);
    return type === "integer" ? Math.floor(v) : Math.round(v * 100) / 100;
  }
  for (const p of PATTERNS) {
    if (p.kind === "string" && p.test.test(name)) {
      const m = text.match(p.find);
      if (m?.[1]) return m[1];
      if (nullable) return null;
    }
  }
  const maxLength = typeof schema.maxLength === "number" ? schema.maxLength : 200;
  // A description reads as the text's first sentence; anything else as its first words.
  const sentence = /description/i.test(name) ? /^\s*([^\n]*?[.!?])(?:\s|$)/.exec(text)?.[1] : undefined;
  const s = sentence ?? (firstWords(text, 12) || name);
  const minLength = typeof schema.minLength === "number" ? schema.minLength : 0;
  return s.padEnd(minLength, ".").slice(0, maxLength);
}

/** Count tokens the same way every time (o200k_base BPE from gpt-tokenizer, loaded on first use). */
export function tokens(text: string): number {
  return countTokens(text);
}

export function respond(input: RespondInput): Respond {
  const seed = sha256(`${input.system ?? ""}\n${input.text}`);
  const value = generate(input.schema, "", input.text, seed, { margin: 0 });
  const json = JSON.stringify(value);
  return {
    value,
    json,
    inputTokens: tokens(`${input.system ?? ""}\n${input.text}`) + countRepeatedTokens(JSON.stringify(input.schema)) + 8,
    outputTokens: tokens(json),
  };
}
