import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
} from "openai";
import type { DeterministicError, TransientError } from "../../core/errors.ts";
import { classifyFailure, type ProviderFailure } from "../classify.ts";
import type { RateSnapshot } from "../limits/headers.ts";
import { rateFromHeaders } from "./headers.ts";

/**
 * An OpenAI SDK error as a sluice error (TransientError or DeterministicError),
 * plus what its headers said about rate limits.
 *
 * @example
 * const { error } = mapError(err, redact); // err: a caught openai.RateLimitError
 */
export function mapError(
  err: unknown,
  redact: (text: string) => string,
): { error: TransientError | DeterministicError; rate?: RateSnapshot } {
  const failure = describe(err);
  const rate = err instanceof APIError ? rateFromHeaders(err.headers) : undefined;
  return { error: classifyFailure("openai", failure, redact), rate };
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
    return {
      kind: "status",
      status: err.status,
      message: err.message,
      code: typeof err.code === "string" ? err.code : undefined,
      headers: err.headers ?? undefined,
      cause: err,
    };
  }
  return { kind: "other", message: err instanceof Error ? err.message : String(err), cause: err };
}

/** A failed line of a batch output or error file: HTTP status and body, or just an error code. */
export function mapBatchLineError(
  line: { response?: { status_code?: number; body?: unknown } | null; error?: { code?: string | null; message?: string | null } | null },
  redact: (text: string) => string,
): TransientError | DeterministicError {
  const status = line.response?.status_code;
  const body = line.response?.body as { error?: { message?: string; code?: string | null; type?: string } } | undefined;
  if (typeof status === "number" && status !== 200) {
    const message = `${status} ${body?.error?.message ?? line.error?.message ?? "request failed in batch"}`;
    return classifyFailure("openai", { kind: "status", status, message, code: body?.error?.code ?? undefined }, redact);
  }
  const code = line.error?.code ?? "unknown_error";
  return classifyFailure("openai", { kind: "code", code, message: `${code}: ${line.error?.message ?? "request failed in batch"}` }, redact);
}
