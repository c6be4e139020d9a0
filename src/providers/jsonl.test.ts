import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { jsonLines, withBatchFile } from "./jsonl.ts";

/** Each test gets its own TMPDIR (os.tmpdir() reads it at every call), to see what is left there. */
let dir: string;
let before: string | undefined;
beforeEach(() => {
  before = process.env.TMPDIR;
  dir = mkdtempSync(join(tmpdir(), "sluice-jsonl-test-"));
  process.env.TMPDIR = dir;
});
afterEach(() => {
  if (before === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = before;
  rmSync(dir, { recursive: true, force: true });
});

function* lines(n: number): Generator<string> {
  for (let i = 0; i < n; i++) yield `${JSON.stringify({ custom_id: `r${i}`, body: { text: "é".repeat(i % 50) } })}\n`;
}

describe("withBatchFile", () => {
  it("hands over the body as a Blob read from a temporary file, counts its UTF-8 bytes, and removes the file after", async () => {
    const whole = [...lines(3_000)].join("");
    const seen = await withBatchFile(lines(3_000), "application/jsonl", async (file) => {
      expect(readdirSync(dir)).toHaveLength(1);
      return { text: await file.blob.text(), bytes: file.bytes, type: file.blob.type };
    });
    expect(seen.text).toBe(whole);
    expect(seen.bytes).toBe(Buffer.byteLength(whole, "utf8"));
    expect(seen.bytes).toBeGreaterThan(whole.length); // the é are two bytes each
    expect(seen.type).toBe("application/jsonl");
    expect(readdirSync(dir)).toEqual([]);
  });

  it("removes the file when sending fails, and when making the lines fails", async () => {
    await expect(withBatchFile(lines(10), "application/jsonl", async () => {
      throw new Error("upload refused");
    })).rejects.toThrow("upload refused");
    expect(readdirSync(dir)).toEqual([]);

    function* broken(): Generator<string> {
      yield* lines(5);
      throw new Error("request could not be built");
    }
    let sent = false;
    await expect(withBatchFile(broken(), "application/jsonl", async () => {
      sent = true;
    })).rejects.toThrow("request could not be built");
    expect(sent).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe("jsonLines", () => {
  it("parses lines split across chunks anywhere, skipping blank lines", async () => {
    const text = [...lines(200)].join("") + "\n\n" + JSON.stringify({ custom_id: "last" });
    const bytes = Buffer.from(text, "utf8");
    // Chunks of 7 bytes cut lines and two-byte characters in the middle.
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 7) controller.enqueue(bytes.subarray(i, i + 7));
        controller.close();
      },
    });
    const got: { custom_id: string }[] = [];
    for await (const line of jsonLines<{ custom_id: string }>(new Response(body))) got.push(line);
    expect(got).toHaveLength(201);
    expect(got[199]!.custom_id).toBe("r199");
    expect(got[200]!.custom_id).toBe("last");
    expect(got.map((l) => JSON.stringify(l) + "\n").slice(0, 200).join("")).toBe([...lines(200)].join(""));
  });
});
