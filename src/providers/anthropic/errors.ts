import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "@anthropic-ai/sdk";
import type { DeterministicError, TransientError } from "../../core/errors.ts";
import { classifyFailure, type ProviderFailure } from "../classify.ts";
import type { RateSnapshot } from "../limits/headers.ts";
import { rateFromHeaders } from "./headers.ts";

/**
 * An Anthropic SDK error as a sluice error (TransientError or
 * DeterministicError), plus what its headers said about rate limits.
 *
 * @example
 * const { error } = mapError(err, redact); // err: a caught Anthropic.OverloadedError
 */
export function mapError(
  err: unknown,
  redact: (text: string) => string,
): { error: TransientError | DeterministicError; rate?: RateSnapshot } {
  const failure = describe(err);
  const rate = err instanceof APIError ? rateFromHeaders(err.headers) : undefined;
  return { error: classifyFailure("anthropic", failure, redact), rate };
}

function describe(err: unknown): ProviderFailure {
  // Order matters: the abort and timeout classes extend the connection error class.
  if (err instanceof APIUserAbortError) return { kind: "aborted", message: "request aborted", cause: err };
  if (err instanceof APIConnectionTimeoutError) return { kind: "timeout", message: "request timed out", cause: err };
  if (err instanceof APIConnectionError) {
    const why = err.cause instanceof Error ? `: ${err.cause.message}` : "";
    return { kind: "connection", message: `connection error${why}`, cause: err };
  }
  if (err instanceof APIError && typeof err.status === "number") {
    const type = err.type ?? undefined;
    // The body's own message reads better than the SDK's JSON dump of the whole envelope.
    const text = err.apiMessage ? `${err.status} ${type ? `${type}: ` : ""}${err.apiMessage}` : err.message;
    return {
      kind: "status",
      status: err.status,
      message: text,
      code: err.errorCode ?? type,
      headers: err.headers ?? undefined,
      cause: err,
    };
  }
  return { kind: "other", message: err instanceof Error ? err.message : String(err), cause: err };
}

/** The `error` of an errored batch result: Anthropic's error envelope, no HTTP status. */
export function mapBatchError(
  body: { error?: { type?: string; message?: string } } | undefined,
  redact: (text: string) => string,
): TransientError | DeterministicError {
  const type = body?.error?.type ?? "api_error";
  return classifyFailure("anthropic", { kind: "code", code: type, message: `${type}: ${body?.error?.message ?? "request failed in batch"}` }, redact);
}
