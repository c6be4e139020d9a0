/**
 * Lines of a streamed JSONL body, parsed one at a time so a 200 MB batch
 * output file is never held in memory whole. Blank lines are skipped.
 *
 * @example
 * for await (const line of jsonLines(response)) console.log(line.custom_id);
 */
export async function* jsonLines<T = unknown>(response: Response): AsyncGenerator<T> {
  if (!response.body) return;
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(chunk, { stream: true });
    let nl = pending.indexOf("\n");
    while (nl !== -1) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line) yield JSON.parse(line) as T;
      nl = pending.indexOf("\n");
    }
  }
  const rest = (pending + decoder.decode()).trim();
  if (rest) yield JSON.parse(rest) as T;
}

/** Serialized size of a batch body in bytes, as the provider will count it. */
export function byteLength(text: string): number {
  return Buffer.byteLength(text, "utf8");
}
