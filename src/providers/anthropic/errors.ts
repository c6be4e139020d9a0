import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "@anthropic-ai/sdk";
import type { DeterministicError, TransientError } from "../../core/errors.ts";
import { batchCodeError, sdkErrorMapper } from "../sdk-errors.ts";
import { rateFromHeaders } from "./headers.ts";

/**
 * An Anthropic SDK error as a sluice error (TransientError or
 * DeterministicError), plus what its headers said about rate limits.
 *
 * @example
 * const { error } = mapError(err, redact); // err: a caught Anthropic.OverloadedError
 */
export const mapError = sdkErrorMapper<APIError>({
  provider: "anthropic",
  classes: { APIError, APIUserAbortError, APIConnectionTimeoutError, APIConnectionError },
  statusDetail: (err) => {
    const type = err.type ?? undefined;
    // The body's own message reads better than the SDK's JSON dump of the whole envelope.
    const message = err.apiMessage ? `${err.status} ${type ? `${type}: ` : ""}${err.apiMessage}` : err.message;
    return { message, code: err.errorCode ?? type };
  },
  rateFromHeaders,
});

/** The `error` of an errored batch result: Anthropic's error envelope, no HTTP status. */
export function mapBatchError(
  body: { error?: { type?: string; message?: string } } | undefined,
  redact: (text: string) => string,
): TransientError | DeterministicError {
  return batchCodeError("anthropic", body?.error?.type ?? "api_error", body?.error?.message, redact);
}
