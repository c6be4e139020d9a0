import { appendFileSync, closeSync, createReadStream, createWriteStream, mkdtempSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Busboy } from "@fastify/busboy";

/** Largest file accepted: OpenAI's batch input limit (200 MB). */
export const MAX_FILE_BYTES = 200 * 1024 * 1024;

export interface StoredFile {
  id: string;
  path: string;
  bytes: number;
  filename: string;
  purpose: string;
  createdAt: number;
}

/** An upload the simulator refuses, with the message its 400 carries. */
export class UploadError extends Error {
  constructor(
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** Where a line sits in a file: read back with `readLineAt`. */
export interface LineAt {
  offset: number;
  length: number;
}

/**
 * The simulator's files (batch inputs and outputs) on disk, in a temporary
 * folder of its own, removed when it stops. Uploads are written as they
 * arrive and downloads are streamed from disk, so a batch of 200 MB costs the
 * process no more memory than one of 2 KB.
 */
export class FileStore {
  private readonly dir = mkdtempSync(join(tmpdir(), "sluice-sim-files-"));
  private readonly files = new Map<string, StoredFile>();
  private seq = 0;
  /** A process that ends without stopping its simulator (an error, `process.exit`) removes the folder too. */
  private readonly atExit = () => rmSync(this.dir, { recursive: true, force: true });

  constructor(private readonly newId: () => string) {
    process.once("exit", this.atExit);
  }

  get(id: string): StoredFile | undefined {
    return this.files.get(id);
  }

  /** A new empty file's record and path, not yet listed (`add` lists it once written). */
  private reserve(filename: string, purpose: string): StoredFile {
    return { id: this.newId(), path: join(this.dir, `f${++this.seq}`), bytes: 0, filename, purpose, createdAt: Date.now() };
  }

  /**
   * A multipart upload (`POST /v1/files`): the `file` part streamed to disk,
   * the `purpose` field kept. Throws UploadError for what OpenAI refuses.
   */
  async receive(req: IncomingMessage): Promise<StoredFile> {
    const contentType = req.headers["content-type"] ?? "";
    if (!/^multipart\/form-data/i.test(contentType)) throw new UploadError("Expected a multipart/form-data body.");
    let purpose: string | undefined;
    let stored: StoredFile | undefined;
    let writing: Promise<void> | undefined;
    let tooLarge = false;
    const busboy = Busboy({ headers: { ...req.headers, "content-type": contentType }, limits: { fileSize: MAX_FILE_BYTES, files: 1 } });
    busboy.on("field", (name, value) => {
      if (name === "purpose") purpose = value;
    });
    busboy.on("file", (name, stream, filename) => {
      if (name !== "file" || stored) return void stream.resume();
      const file = this.reserve(filename || "upload", "");
      stored = file;
      stream.on("data", (chunk: Buffer) => (file.bytes += chunk.length));
      stream.on("limit", () => (tooLarge = true));
      writing = pipeline(stream, createWriteStream(file.path));
    });
    try {
      await pipeline(req, busboy);
      await writing;
      if (tooLarge) throw new UploadError(`File is larger than the ${MAX_FILE_BYTES} bytes allowed.`, "file");
      if (!stored) throw new UploadError("Missing required parameter: 'file'.", "file", "missing_required_parameter");
      if (!purpose) throw new UploadError("Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter");
    } catch (err) {
      if (stored) rmSync(stored.path, { force: true });
      if (err instanceof UploadError) throw err;
      throw new UploadError(`Could not read the multipart body: ${(err as Error).message}`);
    }
    const file = { ...stored, purpose };
    this.files.set(file.id, file);
    return file;
  }

  /**
   * Write a file line by line (`write` is called once per line, in order) and
   * list it. Writes are synchronous, in pieces of about 1 MB: the simulator
   * writes a batch's output files in the poll that finds it ended.
   */
  write(filename: string, purpose: string, fill: (write: (line: string) => void) => void): StoredFile {
    const file = this.reserve(filename, purpose);
    const fd = openSync(file.path, "w");
    try {
      let pending: string[] = [];
      let size = 0;
      const flush = () => {
        if (!pending.length) return;
        const buf = Buffer.from(pending.join(""), "utf8");
        writeSync(fd, buf);
        file.bytes += buf.length;
        pending = [];
        size = 0;
      };
      fill((line) => {
        pending.push(line, "\n");
        size += line.length + 1;
        if (size >= 1 << 20) flush();
      });
      flush();
    } finally {
      closeSync(fd);
    }
    this.files.set(file.id, file);
    return file;
  }

  /**
   * A file's lines, read as a stream, each with where it sits (in bytes,
   * without its newline) and its 1-based number.
   */
  async *lines(file: StoredFile): AsyncGenerator<{ text: string; at: LineAt; n: number }> {
    let carry: Buffer = Buffer.alloc(0);
    let offset = 0;
    let n = 0;
    for await (const chunk of createReadStream(file.path) as AsyncIterable<Buffer>) {
      const buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
      let start = 0;
      for (let nl = buf.indexOf(0x0a); nl !== -1; nl = buf.indexOf(0x0a, start)) {
        yield { text: buf.toString("utf8", start, nl), at: { offset: offset + start, length: nl - start }, n: ++n };
        start = nl + 1;
      }
      carry = buf.subarray(start);
      offset += start;
    }
    if (carry.length) yield { text: carry.toString("utf8"), at: { offset, length: carry.length }, n: ++n };
  }

  /** One line of a file, read from disk (a batch's request when the simulator processes it). */
  readLineAt(file: StoredFile, at: LineAt): string {
    return readAt(file.path, at);
  }

  /** A file of lines appended one at a time and read back by where they sit, never listed (a batch's results until it ends). */
  spool(): Spool {
    return new Spool(join(this.dir, `s${++this.seq}`));
  }

  /** `GET /v1/files/{id}/content`: streamed from disk. */
  async send(res: ServerResponse, file: StoredFile): Promise<void> {
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": file.bytes });
    await pipeline(createReadStream(file.path), res);
  }

  /**
   * Delete a file. With `keepData`, it is only unlisted: a batch still
   * running reads its requests from it (the folder goes when the simulator stops).
   */
  delete(id: string, keepData = false): boolean {
    const file = this.files.get(id);
    if (!file) return false;
    this.files.delete(id);
    if (!keepData) rmSync(file.path, { force: true });
    return true;
  }

  /** Remove every file and the folder. */
  close(): void {
    this.files.clear();
    process.off("exit", this.atExit);
    this.atExit();
  }
}

function readAt(path: string, at: LineAt): string {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.allocUnsafe(at.length);
    readSync(fd, buf, 0, at.length, at.offset);
    return buf.toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/** See `FileStore.spool`. */
export class Spool {
  private bytes = 0;

  constructor(private readonly path: string) {}

  append(text: string): LineAt {
    const buf = Buffer.from(text + "\n", "utf8");
    appendFileSync(this.path, buf);
    const at = { offset: this.bytes, length: buf.length - 1 };
    this.bytes += buf.length;
    return at;
  }

  read(at: LineAt): string {
    return readAt(this.path, at);
  }

  remove(): void {
    rmSync(this.path, { force: true });
  }
}
