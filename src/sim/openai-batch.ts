import type { IncomingMessage, ServerResponse } from "node:http";
import { BatchRun, shouldExpire, type BatchItem, type ItemOutcome } from "./batches.ts";
import { draw } from "./faults.ts";
import { FileStore, UploadError, type LineAt, type Spool, type StoredFile } from "./files.ts";
import { sendJson } from "./http.ts";
import { finalAnswer, honestAnswer, requestHash } from "./model.ts";
import { chatCompletion, openaiError, parseChat } from "./openai.ts";
import type { SimState } from "./state.ts";

const ENDPOINT = "/v1/chat/completions";
const MAX_REQUESTS = 50_000;

/** A result line's `response`: what the endpoint would have answered. */
interface LineResponse {
  status_code: number;
  request_id: string;
  body: unknown;
}

/** A processed request: its status code, and where its `response` waits in the batch's spool until the batch ends. */
interface Spooled {
  status: number;
  at: LineAt;
}

interface OpenAIBatch {
  /** Each request is where its line sits in the input file, read when it is processed. */
  run: BatchRun<LineAt, Spooled>;
  input: StoredFile;
  spool: Spool;
  completionWindow: string;
  metadata: unknown;
  model?: string;
  errors?: { code: string; message: string; param: string | null; line: number | null }[];
  outputFileId?: string;
  errorFileId?: string;
  usage: { input: number; output: number };
  /** Set once the result files are written. */
  finished?: boolean;
}

const notFound = (what: string, id: string) => openaiError(`No such ${what}: ${id}`, "invalid_request_error", "id");
const seconds = (ms: number | undefined) => (ms === undefined ? null : Math.floor(ms / 1000));

/**
 * OpenAI's Files and Batch APIs. Files live on disk (`files.ts`); a batch
 * keeps where each request sits in its input file, and its results in a
 * spool file until it ends, so memory does not grow with a batch's size.
 */
export class OpenAIBatches {
  private readonly files: FileStore;
  private readonly batches = new Map<string, OpenAIBatch>();

  constructor(private readonly state: SimState) {
    this.files = new FileStore(() => state.id("file-"));
  }

  /** Remove every file (the simulator stops). */
  close(): void {
    this.files.close();
  }

  private fileObject(f: StoredFile): unknown {
    return {
      id: f.id,
      object: "file",
      bytes: f.bytes,
      created_at: seconds(f.createdAt),
      filename: f.filename,
      purpose: f.purpose,
      status: "processed",
      expires_at: null,
      status_details: null,
    };
  }

  /** `POST /v1/files` (multipart/form-data), written to disk as it arrives. */
  async createFile(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let f: StoredFile;
    try {
      f = await this.files.receive(req);
    } catch (err) {
      if (!(err instanceof UploadError)) throw err;
      return sendJson(res, 400, openaiError(err.message, "invalid_request_error", err.param ?? undefined, err.code ?? undefined));
    }
    sendJson(res, 200, this.fileObject(f));
  }

  getFile(res: ServerResponse, id: string): void {
    const f = this.files.get(id);
    if (!f) return sendJson(res, 404, notFound("File", id));
    sendJson(res, 200, this.fileObject(f));
  }

  async fileContent(res: ServerResponse, id: string): Promise<void> {
    const f = this.files.get(id);
    if (!f) return sendJson(res, 404, notFound("File", id));
    await this.files.send(res, f);
  }

  deleteFile(res: ServerResponse, id: string): void {
    const running = [...this.batches.values()].some((b) => !b.finished && b.input.id === id);
    if (!this.files.delete(id, running)) return sendJson(res, 404, notFound("File", id));
    sendJson(res, 200, { id, object: "file", deleted: true });
  }

  /** `POST /v1/batches`. */
  async createBatch(res: ServerResponse, body: unknown): Promise<void> {
    const b = (body ?? {}) as Record<string, unknown>;
    if (typeof b.input_file_id !== "string") {
      return sendJson(res, 400, openaiError("Missing required parameter: 'input_file_id'.", "invalid_request_error", "input_file_id", "missing_required_parameter"));
    }
    if (b.endpoint !== ENDPOINT) {
      return sendJson(res, 400, openaiError(`Invalid value for 'endpoint': the simulator supports '${ENDPOINT}'.`, "invalid_request_error", "endpoint", "invalid_value"));
    }
    if (b.completion_window !== "24h") {
      return sendJson(res, 400, openaiError("Invalid value for 'completion_window': expected '24h'.", "invalid_request_error", "completion_window", "invalid_value"));
    }
    const file = this.files.get(b.input_file_id);
    if (!file) return sendJson(res, 404, notFound("File", b.input_file_id));

    const { items, errors, model } = await parseInput(this.files, file);
    const { state } = this;
    const ordinal = ++state.batchOrdinal;
    const id = state.id("batch_");
    const batch: OpenAIBatch = {
      input: file,
      spool: this.files.spool(),
      completionWindow: "24h",
      metadata: b.metadata ?? null,
      model,
      errors: errors.length ? errors : undefined,
      usage: { input: 0, output: 0 },
      run: undefined as never,
    };
    batch.run = new BatchRun(id, items, {
      expires: shouldExpire(state.config.batch, state.config.seed, ordinal),
      orderSeed: `${state.config.seed}:${ordinal}`,
      now: Date.now(),
      invalid: errors.length > 0,
      process: (item) => this.processItem(batch, item),
    });
    this.batches.set(id, batch);
    state.stats.batchCreated(items.length);
    sendJson(res, 200, this.batchObject(batch));
  }

  private processItem(batch: OpenAIBatch, item: BatchItem<LineAt>): ItemOutcome<Spooled> {
    const out = this.answer(batch, (JSON.parse(this.files.readLineAt(batch.input, item.input)) as { body: Record<string, unknown> }).body, item.customId);
    return { ok: out.status_code === 200, out: { status: out.status_code, at: batch.spool.append(JSON.stringify(out)) } };
  }

  /** What the endpoint answers one request of the batch. */
  private answer(batch: OpenAIBatch, input: Record<string, unknown>, customId: string): LineResponse {
    const { state } = this;
    const request_id = state.id("req_");
    const parsed = parseChat(input);
    if (!parsed.ok) return { status_code: parsed.status, request_id, body: parsed.body };
    const hash = requestHash(input);
    state.stats.call(parsed.req.model, hash, customId);
    const d = draw(state.config.faults, state.config.seed, hash, state.nextAttempt(hash), "content");
    if (d.u3 < state.config.batch.failureRate) {
      state.stats.fault("batch_request_error");
      const body = openaiError("The server had an error while processing your request. Sorry about that!", "server_error");
      return { status_code: 500, request_id, body };
    }
    const a = finalAnswer(parsed.req, honestAnswer(parsed.req), d.fault as Parameters<typeof finalAnswer>[2], d.seed);
    if (a.fault) state.stats.fault(a.fault);
    state.stats.bill(hash, a.inputTokens, a.outputTokens, true, `batch ${batch.run.id} ${parsed.req.model}`);
    batch.usage.input += a.inputTokens;
    batch.usage.output += a.outputTokens;
    return { status_code: 200, request_id, body: chatCompletion(parsed.req, a, state.id("chatcmpl-", 29)) };
  }

  private lookup(res: ServerResponse, id: string): OpenAIBatch | undefined {
    const batch = this.batches.get(id);
    if (!batch) sendJson(res, 404, notFound("batch", id));
    return batch;
  }

  /** `GET /v1/batches/{id}`: each poll moves the batch along. */
  /** `GET /v1/batches`: newest first, `limit` per page (default 20, at most 100), after the id `after`. */
  listBatches(res: ServerResponse, query: URLSearchParams): void {
    const all = [...this.batches.values()].reverse();
    const after = query.get("after");
    const start = after ? all.findIndex((b) => b.run.id === after) + 1 : 0;
    const limit = Math.min(100, Math.max(1, Number(query.get("limit") ?? 20) || 20));
    const page = all.slice(start, start + limit);
    for (const b of page) this.advance(b, false);
    sendJson(res, 200, {
      object: "list",
      data: page.map((b) => this.batchObject(b)),
      first_id: page[0]?.run.id ?? null,
      last_id: page.at(-1)?.run.id ?? null,
      has_more: start + limit < all.length,
    });
  }

  getBatch(res: ServerResponse, id: string): void {
    const batch = this.lookup(res, id);
    if (!batch) return;
    this.advance(batch);
    sendJson(res, 200, this.batchObject(batch));
  }

  /** `POST /v1/batches/{id}/cancel`. */
  cancelBatch(res: ServerResponse, id: string): void {
    const batch = this.lookup(res, id);
    if (!batch) return;
    const accepted = batch.run.cancel(Date.now(), this.state.config.batch);
    this.advance(batch, false);
    if (!accepted) return sendJson(res, 409, openaiError(`Cannot cancel a batch with status '${batch.run.phase}'.`));
    sendJson(res, 200, this.batchObject(batch));
  }

  private advance(batch: OpenAIBatch, poll = true): void {
    if (!batch.run.ended) batch.run.advance(Date.now(), this.state.config.batch, poll);
    if (batch.run.ended && !batch.finished) {
      batch.finished = true;
      this.finish(batch);
    }
  }

  /** Write the output and error files once the batch has ended, from the spool, line by line. */
  private finish(batch: OpenAIBatch): void {
    const { run } = batch;
    this.state.stats.batchEnded(run.phase === "completed" ? "completed" : run.phase === "expired" ? "expired" : run.phase === "cancelled" ? "cancelled" : "failed");
    if (run.phase !== "failed") {
      if (run.phase === "expired") this.state.stats.fault("batch_expired");
      const order = run.order();
      const file = (kind: "output" | "error") => {
        const { state } = this;
        const lines = (function* () {
          for (const i of order) {
            const r = run.results[i];
            const customId = JSON.stringify(run.items[i]!.customId);
            if (r && (r.out.status === 200) === (kind === "output")) {
              yield `{"id":${JSON.stringify(state.id("batch_req_"))},"custom_id":${customId},"response":${batch.spool.read(r.out.at)},"error":null}`;
            } else if (!r && kind === "error" && run.phase === "expired") {
              const error = { code: "batch_expired", message: "This request could not be executed before the completion window expired." };
              yield JSON.stringify({ id: state.id("batch_req_"), custom_id: run.items[i]!.customId, response: null, error });
            }
          }
        })();
        let first = lines.next();
        if (first.done) return undefined;
        return this.files.write(`${run.id}_${kind}.jsonl`, "batch_output", (write) => {
          for (; !first.done; first = lines.next()) write(first.value);
        }).id;
      };
      batch.outputFileId = file("output");
      batch.errorFileId = file("error");
    }
    batch.spool.remove();
  }

  private batchObject(batch: OpenAIBatch): unknown {
    const { run } = batch;
    return {
      id: run.id,
      object: "batch",
      endpoint: ENDPOINT,
      model: batch.model,
      errors: batch.errors ? { object: "list", data: batch.errors } : null,
      input_file_id: batch.input.id,
      completion_window: batch.completionWindow,
      status: run.phase,
      output_file_id: batch.outputFileId ?? null,
      error_file_id: batch.errorFileId ?? null,
      created_at: seconds(run.createdAt),
      in_progress_at: seconds(run.inProgressAt),
      expires_at: seconds(run.createdAt + 24 * 3600_000),
      finalizing_at: seconds(run.finalizingAt),
      completed_at: run.phase === "completed" ? seconds(run.endedAt) : null,
      failed_at: run.phase === "failed" ? seconds(run.endedAt) : null,
      expired_at: run.phase === "expired" ? seconds(run.endedAt) : null,
      cancelling_at: seconds(run.cancellingAt),
      cancelled_at: run.phase === "cancelled" ? seconds(run.endedAt) : null,
      request_counts: { total: run.items.length, completed: run.succeeded, failed: run.errored },
      usage: {
        input_tokens: batch.usage.input,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: batch.usage.output,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: batch.usage.input + batch.usage.output,
      },
      metadata: batch.metadata,
    };
  }
}

/**
 * Read a batch input file as a stream, one request per line, checked the way
 * the Batch API validates; each request is kept as where its line sits.
 */
async function parseInput(files: FileStore, file: StoredFile): Promise<{ items: BatchItem<LineAt>[]; errors: NonNullable<OpenAIBatch["errors"]>; model?: string }> {
  const items: BatchItem<LineAt>[] = [];
  const errors: NonNullable<OpenAIBatch["errors"]> = [];
  const seen = new Set<string>();
  let model: string | undefined;
  for await (const { text: raw, at, n: line } of files.lines(file)) {
    if (raw.trim() === "") continue;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      errors.push({ code: "invalid_json_line", message: "This line is not parseable as valid JSON.", param: null, line });
      continue;
    }
    const customId = obj.custom_id;
    if (typeof customId !== "string" || customId === "") {
      errors.push({ code: "missing_required_parameter", message: "Missing required parameter: 'custom_id'.", param: "custom_id", line });
    } else if (seen.has(customId)) {
      errors.push({ code: "duplicate_custom_id", message: `The custom_id for this request is a duplicate of another request: '${customId}'.`, param: "custom_id", line });
    } else if (obj.url !== ENDPOINT) {
      errors.push({ code: "mismatched_endpoint", message: `The URL provided for this request does not match the batch endpoint '${ENDPOINT}'.`, param: "url", line });
    } else if (obj.method !== "POST") {
      errors.push({ code: "invalid_value", message: "Invalid value for 'method': expected 'POST'.", param: "method", line });
    } else if (!obj.body || typeof obj.body !== "object") {
      errors.push({ code: "missing_required_parameter", message: "Missing required parameter: 'body'.", param: "body", line });
    } else {
      seen.add(customId);
      if (items.length === 0) {
        const m = (obj.body as Record<string, unknown>).model;
        if (typeof m === "string") model = m;
      }
      items.push({ customId, input: at });
    }
  }
  if (items.length + errors.length === 0) errors.push({ code: "empty_file", message: "The batch input file is empty.", param: null, line: null });
  if (items.length > MAX_REQUESTS) {
    errors.push({ code: "too_many_requests", message: `A batch may hold at most ${MAX_REQUESTS} requests.`, param: null, line: null });
  }
  return { items, errors, model };
}
