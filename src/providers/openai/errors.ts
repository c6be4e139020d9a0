import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "openai";
import type { DeterministicError, TransientError } from "../../core/errors.ts";
import { classifyFailure } from "../classify.ts";
import { batchCodeError, sdkErrorMapper } from "../sdk-errors.ts";
import { rateFromHeaders } from "./headers.ts";

/**
 * An OpenAI SDK error as a sluice error (TransientError or DeterministicError),
 * plus what its headers said about rate limits.
 *
 * @example
 * const { error } = mapError(err, redact); // err: a caught openai.RateLimitError
 */
export const mapError = sdkErrorMapper<APIError>({
  provider: "openai",
  classes: { APIError, APIUserAbortError, APIConnectionTimeoutError, APIConnectionError },
  statusDetail: (err) => ({ message: err.message, code: typeof err.code === "string" ? err.code : undefined }),
  rateFromHeaders,
});

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
  return batchCodeError("openai", line.error?.code ?? "unknown_error", line.error?.message, redact);
}
