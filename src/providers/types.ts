import type { JsonSchema, LlmParams } from "../core/types.ts";

/**
 * The Provider interface: everything the engine needs from an LLM API. Vendor
 * SDK types stay inside `src/providers/<vendor>/`; adapters only translate.
 */
export interface CompletionRequest {
  /** Stable id of this request (a batch `custom_id`): `^[a-zA-Z0-9_-]{1,64}$`. */
  customId: string;
  model: string;
  system?: string;
  messages: { role: "user" | "assistant"; content: string }[];
  /** Structured-output schema. */
  schema: { name: string; schema: JsonSchema };
  params: LlmParams;
}

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens?: number;
}

export type FinishReason = "stop" | "length" | "refusal" | "content_filter";

export interface CompletionResult {
  /** The raw text of the answer (JSON, if the model complied). */
  text: string;
  finishReason: FinishReason;
  usage: Usage;
  model: string;
  /** A refusal message, when the model refused. */
  refusal?: string;
  requestId?: string;
}

export interface CallOptions {
  signal?: AbortSignal;
}

/** Native batch APIs (half price): submit, poll, read results by custom id. */
export interface BatchApi {
  readonly maxRequests: number;
  readonly maxBytes: number;
  /**
   * `tag` names this submission (recorded in the store before it is sent), so
   * that a process that died while submitting can be followed by one that
   * finds the batch (`findSubmitted`) instead of paying for it again.
   */
  submit(requests: CompletionRequest[], options?: { tag?: string }): Promise<{ batchId: string }>;
  /**
   * The batch a submission tagged `tag` created, if the provider has it:
   * created after `since`, carrying `requests` requests, and not one of
   * `known` (batches recorded already). Undefined when no such batch exists.
   */
  findSubmitted?(tag: string, match: { requests: number; since: Date; known: ReadonlySet<string> }): Promise<string | undefined>;
  poll(batchId: string): Promise<BatchState>;
  results(batchId: string): AsyncIterable<BatchResult>;
  cancel(batchId: string): Promise<void>;
}

export interface BatchState {
  status: "in_progress" | "ended" | "expired" | "cancelled" | "failed";
  counts: { succeeded: number; errored: number; processing: number };
}

export type BatchResult =
  | { customId: string; ok: true; result: CompletionResult }
  | { customId: string; ok: false; error: Error };

export interface Provider {
  readonly name: string;
  /**
   * One realtime call. Throws TransientError or DeterministicError (from
   * `core/errors.ts`) on failure; the engine owns retries.
   */
  complete(request: CompletionRequest, options?: CallOptions): Promise<CompletionResult>;
  batch?: BatchApi;
  close?(): Promise<void>;
}
