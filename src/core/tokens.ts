import { createRequire } from "node:module";

/**
 * Token counting with gpt-tokenizer's o200k_base encoding (the GPT-4o family),
 * the one encoding sluice uses: for budgets and rate limits (charged before a
 * call is sent), `sluice estimate`, and the simulator's reported usage.
 *
 * The encoding is loaded on the first count, not when a module imports this
 * one: its rank table is about 70 MB of resident memory, which commands that
 * count nothing (`sluice status`, `--help`, `ls`) never pay. All callers share
 * the one loaded copy. The CommonJS entry is required so a count stays a
 * synchronous call.
 *
 * @example
 * countTokens("Classify: refund please"); // 5
 */
type Encoding = typeof import("gpt-tokenizer/encoding/o200k_base");

let loaded: Encoding | undefined;

function encoding(): Encoding {
  return (loaded ??= createRequire(import.meta.url)("gpt-tokenizer/encoding/o200k_base") as Encoding);
}

export function countTokens(text: string): number {
  return encoding().countTokens(text);
}

/**
 * The count of a text that comes back with every request of a stage (its
 * system prompt, its schema): remembered, as counting is most of the memory a
 * request allocates (the tokenizer's matches). At most `REMEMBERED` texts are
 * kept; past that the memory starts over.
 */
export function countRepeatedTokens(text: string): number {
  let n = remembered.get(text);
  if (n === undefined) {
    if (remembered.size >= REMEMBERED) remembered.clear();
    remembered.set(text, (n = countTokens(text)));
  }
  return n;
}

const REMEMBERED = 256;
const remembered = new Map<string, number>();

export function encode(text: string): number[] {
  return encoding().encode(text);
}

export function decode(tokens: number[]): string {
  return encoding().decode(tokens);
}
