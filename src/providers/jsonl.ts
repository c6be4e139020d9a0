import { once } from "node:events";
import { createWriteStream, openAsBlob } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { finished } from "node:stream/promises";

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
    let start = 0;
    let nl = pending.indexOf("\n");
    while (nl !== -1) {
      const line = pending.slice(start, nl).trim();
      if (line) yield JSON.parse(line) as T;
      start = nl + 1;
      nl = pending.indexOf("\n", start);
    }
    pending = pending.slice(start);
  }
  const rest = (pending + decoder.decode()).trim();
  if (rest) yield JSON.parse(rest) as T;
}

/** A batch body written to a temporary file, to be uploaded from disk. */
export interface BatchFile {
  /** The file as a Blob read from disk when it is sent (`fs.openAsBlob`): never in memory whole. */
  blob: Blob;
  bytes: number;
}

/**
 * Write a batch body to a temporary file, piece by piece, hand it to `send`
 * as a disk-backed Blob, and remove the file afterwards (also when writing
 * or sending fails). A batch of thousands of requests is never one string
 * or one Buffer: the largest thing held is one request's line.
 *
 * @example
 * function* lines() { for (const r of requests) yield JSON.stringify(r) + "\n"; }
 * await withBatchFile(lines(), "application/jsonl", (file) => upload(file.blob));
 */
export async function withBatchFile<T>(pieces: Iterable<string>, type: string, send: (file: BatchFile) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "sluice-batch-"));
  try {
    const path = join(dir, "batch.jsonl");
    const out = createWriteStream(path);
    // Held from the start: a write error between two awaits would otherwise be an unhandled 'error' event.
    let failure: unknown;
    out.on("error", (err) => (failure ??= err));
    let bytes = 0;
    try {
      for (const piece of pieces) {
        if (failure) throw failure;
        bytes += Buffer.byteLength(piece, "utf8");
        if (!out.write(piece)) await once(out, "drain");
      }
      out.end();
      await finished(out);
    } finally {
      out.destroy();
    }
    return await send({ blob: await openAsBlob(path, { type }), bytes });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
