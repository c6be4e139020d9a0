import type { ChatCompletion } from "openai/resources/chat/completions";
import { DeterministicError, TransientError } from "../../core/errors.ts";
import { jsonLines, withBatchFile } from "../jsonl.ts";
import { checkBatch, CLOCK_SKEW_S } from "../batching.ts";
import type { BatchApi, BatchResult, BatchState, CompletionRequest } from "../types.ts";
import type { OpenAIClient } from "./client.ts";
import { mapBatchLineError, mapError } from "./errors.ts";
import { fromChatCompletion, toChatBody } from "./realtime.ts";

import { OPENAI_BATCH_LIMITS } from "./batch-limits.ts";

export { OPENAI_BATCH_LIMITS };

const ENDPOINT = "/v1/chat/completions";

/** The batch metadata key that carries sluice's submission tag. */
const SUBMISSION_KEY = "sluice_submission";

interface OutputLine {
  custom_id: string;
  response?: { status_code?: number; request_id?: string; body?: unknown } | null;
  error?: { code?: string | null; message?: string | null } | null;
}

/** The lines of the JSONL a batch is uploaded as: one chat completions request per line, made as they are written. */
export function* batchLines(requests: Iterable<CompletionRequest>): Generator<string> {
  for (const r of requests) yield JSON.stringify({ custom_id: r.customId, method: "POST", url: ENDPOINT, body: toChatBody(r) }) + "\n";
}

/** The JSONL a batch is uploaded as, whole (for tests; `submit` writes it to a file line by line). */
export function toBatchJsonl(requests: CompletionRequest[]): string {
  return [...batchLines(requests)].join("");
}

/**
 * OpenAI's Batch API: upload the JSONL as a file, create the batch, poll it,
 * stream its output and error files back as results keyed by custom id.
 */
export class OpenAIBatchApi implements BatchApi {
  readonly maxRequests = OPENAI_BATCH_LIMITS.maxRequests;
  readonly maxBytes = OPENAI_BATCH_LIMITS.maxBytes;

  // A true private field: JSON.stringify and util.inspect never reach the SDK client, which holds the key.
  readonly #client: OpenAIClient;

  constructor(
    client: OpenAIClient,
    private readonly redact: (text: string) => string,
  ) {
    this.#client = client;
  }

  async submit(requests: CompletionRequest[], options: { tag?: string } = {}): Promise<{ batchId: string }> {
    // Written to a temporary file and uploaded from disk: a batch is never one string or Buffer in memory.
    const batch = await withBatchFile(batchLines(requests), "application/jsonl", async ({ blob, bytes }) => {
      checkBatch("openai", requests, bytes, this);
      return this.guard(async () => {
        const file = await this.#client.files.create({
          file: new File([blob], "sluice-batch.jsonl", { type: "application/jsonl" }),
          purpose: "batch",
        });
        return this.#client.batches.create({
          input_file_id: file.id,
          endpoint: ENDPOINT,
          completion_window: "24h",
          ...(options.tag ? { metadata: { [SUBMISSION_KEY]: options.tag } } : {}),
        });
      });
    });
    return { batchId: batch.id };
  }

  /** The batch whose metadata carries the tag, among those created since `since` (newest first). */
  async findSubmitted(tag: string, match: { since: Date }): Promise<string | undefined> {
    return this.guard(async () => {
      const oldest = match.since.getTime() / 1000 - CLOCK_SKEW_S;
      for await (const b of this.#client.batches.list({ limit: 100 })) {
        if (b.metadata?.[SUBMISSION_KEY] === tag) return b.id;
        if (b.created_at < oldest) return undefined;
      }
      return undefined;
    });
  }

  async poll(batchId: string): Promise<BatchState> {
    const b = await this.guard(() => this.#client.batches.retrieve(batchId));
    const total = b.request_counts?.total ?? 0;
    const succeeded = b.request_counts?.completed ?? 0;
    const errored = b.request_counts?.failed ?? 0;
    const status: BatchState["status"] =
      b.status === "completed" ? "ended"
      : b.status === "expired" ? "expired"
      : b.status === "cancelled" ? "cancelled"
      : b.status === "failed" ? "failed"
      // validating, in_progress, finalizing and cancelling are all "not done yet".
      : "in_progress";
    return { status, counts: { succeeded, errored, processing: Math.max(0, total - succeeded - errored) } };
  }

  async *results(batchId: string): AsyncIterable<BatchResult> {
    const b = await this.guard(() => this.#client.batches.retrieve(batchId));
    const seen = new Set<string>();
    for (const fileId of [b.output_file_id, b.error_file_id]) {
      if (!fileId) continue;
      const response = await this.guard(() => this.#client.files.content(fileId));
      for await (const line of jsonLines<OutputLine>(response)) {
        seen.add(line.custom_id);
        yield this.toResult(line);
      }
    }
    if (b.status === "failed" || b.status === "cancelled" || b.status === "expired") {
      yield* this.unfinished(b.input_file_id, b.status, b.errors?.data ?? [], seen);
    }
  }

  async cancel(batchId: string): Promise<void> {
    await this.guard(() => this.#client.batches.cancel(batchId));
  }

  private toResult(line: OutputLine): BatchResult {
    const r = line.response;
    if (r && r.status_code === 200 && r.body) {
      return { customId: line.custom_id, ok: true, result: fromChatCompletion(r.body as ChatCompletion, r.request_id) };
    }
    return { customId: line.custom_id, ok: false, error: mapBatchLineError(line, this.redact) };
  }

  /**
   * A batch that failed validation, was cancelled or expired may leave requests
   * out of its output and error files. Every request still gets a result, read
   * from the input file: lines the provider named as invalid are deterministic
   * failures; the rest never ran, and are transient so the engine resubmits them.
   */
  private async *unfinished(
    inputFileId: string,
    status: "failed" | "cancelled" | "expired",
    errors: { line?: number | null; message?: string; code?: string }[],
    seen: Set<string>,
  ): AsyncIterable<BatchResult> {
    const byLine = new Map(errors.filter((e) => typeof e.line === "number").map((e) => [e.line!, e]));
    const general = errors.find((e) => typeof e.line !== "number");
    let response: Response;
    try {
      response = await this.#client.files.content(inputFileId);
    } catch {
      return; // The input file is gone: the engine treats ids without a result as unfinished.
    }
    let n = 0;
    for await (const line of jsonLines<{ custom_id: string }>(response)) {
      n++;
      if (seen.has(line.custom_id)) continue;
      const own = byLine.get(n);
      const error = own
        ? new DeterministicError(`openai: batch line ${n} rejected: ${this.redact(own.message ?? own.code ?? "invalid")}`)
        : new TransientError(`openai: request not run, batch ${status}${general?.message ? `: ${this.redact(general.message)}` : ""}`);
      yield { customId: line.custom_id, ok: false, error };
    }
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mapError(err, this.redact).error;
    }
  }
}
