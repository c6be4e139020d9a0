import type { MessageBatch, MessageBatchIndividualResponse } from "@anthropic-ai/sdk/resources/messages";
import { TransientError } from "../../core/errors.ts";
import { checkBatch, CLOCK_SKEW_S } from "../batching.ts";
import { withBatchFile } from "../jsonl.ts";
import type { BatchApi, BatchResult, BatchState, CompletionRequest } from "../types.ts";
import type { AnthropicClient } from "./client.ts";
import { mapBatchError, mapError } from "./errors.ts";
import { fromMessage, toMessageBody } from "./realtime.ts";

import { ANTHROPIC_BATCH_LIMITS } from "./batch-limits.ts";

export { ANTHROPIC_BATCH_LIMITS };

/** The JSON body of a batch's create call, `{"requests":[...]}`, a request at a time. */
export function* bodyPieces(requests: Iterable<CompletionRequest>): Generator<string> {
  yield '{"requests":[';
  let first = true;
  for (const r of requests) {
    yield `${first ? "" : ","}${JSON.stringify({ custom_id: r.customId, params: toMessageBody(r) })}`;
    first = false;
  }
  yield "]}";
}

/**
 * Anthropic's Message Batches: create with the requests inline, poll, stream
 * results keyed by custom id. Canceled and expired requests come back as
 * TransientErrors so the engine retries just those.
 */
export class AnthropicBatchApi implements BatchApi {
  readonly maxRequests = ANTHROPIC_BATCH_LIMITS.maxRequests;
  readonly maxBytes = ANTHROPIC_BATCH_LIMITS.maxBytes;

  // A true private field: JSON.stringify and util.inspect never reach the SDK client, which holds the key.
  readonly #client: AnthropicClient;

  constructor(
    client: AnthropicClient,
    private readonly redact: (text: string) => string,
  ) {
    this.#client = client;
  }

  /**
   * Message Batches take the requests in the create call's JSON body: it is
   * written to a temporary file a request at a time and sent from disk, as
   * `messages.batches.create` would send it whole from memory.
   */
  async submit(requests: CompletionRequest[]): Promise<{ batchId: string }> {
    const batch = await withBatchFile(bodyPieces(requests), "application/json", ({ blob, bytes }) => {
      checkBatch("anthropic", requests, bytes, this);
      return this.guard(() => this.#client.post<MessageBatch>("/v1/messages/batches", { body: blob, headers: { "content-type": "application/json" } }));
    });
    return { batchId: batch.id };
  }

  /**
   * Message Batches carry no metadata, so a submission is recognised by when
   * it was created and how many requests it carries: the one batch, created
   * since `since` and not already known, with that many requests. Two such
   * batches cannot be told apart, and none is returned (the items are sent
   * again rather than collected from a stranger's batch).
   */
  async findSubmitted(_tag: string, match: { requests: number; since: Date; known: ReadonlySet<string> }): Promise<string | undefined> {
    return this.guard(async () => {
      const oldest = match.since.getTime() - CLOCK_SKEW_S * 1000;
      const found: string[] = [];
      for await (const b of this.#client.messages.batches.list({ limit: 100 })) {
        if (Date.parse(b.created_at) < oldest) break;
        const c = b.request_counts;
        const total = c.processing + c.succeeded + c.errored + c.canceled + c.expired;
        if (total === match.requests && !match.known.has(b.id)) found.push(b.id);
      }
      return found.length === 1 ? found[0] : undefined;
    });
  }

  async poll(batchId: string): Promise<BatchState> {
    const b = await this.guard(() => this.#client.messages.batches.retrieve(batchId));
    const c = b.request_counts;
    const counts = { succeeded: c.succeeded, errored: c.errored + c.canceled + c.expired, processing: c.processing };
    if (b.processing_status !== "ended") return { status: "in_progress", counts };
    const finished = c.succeeded + c.errored;
    const status: BatchState["status"] =
      c.expired > 0 && finished === 0 ? "expired"
      : c.canceled > 0 && b.cancel_initiated_at ? "cancelled"
      : "ended";
    return { status, counts };
  }

  async *results(batchId: string): AsyncIterable<BatchResult> {
    const stream = await this.guard(() => this.#client.messages.batches.results(batchId));
    for await (const line of stream) yield this.toResult(line);
  }

  async cancel(batchId: string): Promise<void> {
    await this.guard(() => this.#client.messages.batches.cancel(batchId));
  }

  private toResult(line: MessageBatchIndividualResponse): BatchResult {
    const id = line.custom_id;
    const r = line.result;
    switch (r.type) {
      case "succeeded":
        return { customId: id, ok: true, result: fromMessage(r.message) };
      case "errored":
        return { customId: id, ok: false, error: mapBatchError(r.error, this.redact) };
      case "canceled":
        return { customId: id, ok: false, error: new TransientError("anthropic: request canceled with its batch before it ran") };
      case "expired":
        return { customId: id, ok: false, error: new TransientError("anthropic: batch expired before this request ran") };
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
