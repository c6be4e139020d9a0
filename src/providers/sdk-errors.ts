import type { DeterministicError, TransientError } from "../core/errors.ts";
import { classifyFailure, type ProviderFailure } from "./classify.ts";
import type { HeaderBag, RateSnapshot } from "./limits/headers.ts";

/** A class to test with `instanceof`; the SDKs' constructors take arguments we never pass. */
type ErrorClass<E> = abstract new (...args: never[]) => E;

/** What the OpenAI and Anthropic SDKs' `APIError` have in common (both SDKs are generated from one template). */
interface SdkApiError extends Error {
  readonly status: number | undefined;
  readonly headers: HeaderBag | undefined;
}

/** The vendor-specific bits of mapping an SDK error: its classes, how it reads, which rate headers it sends. */
export interface SdkErrorVendor<ApiError extends SdkApiError> {
  provider: string;
  classes: {
    APIError: ErrorClass<ApiError>;
    APIUserAbortError: ErrorClass<Error>;
    APIConnectionTimeoutError: ErrorClass<Error>;
    APIConnectionError: ErrorClass<Error>;
  };
  /** Message and machine-readable code (`insufficient_quota`, `overloaded_error`) of an error with an HTTP status. */
  statusDetail: (err: ApiError & { status: number }) => { message: string; code: string | undefined };
  rateFromHeaders: (headers: HeaderBag | undefined | null) => RateSnapshot | undefined;
}

export type MapSdkError = (
  err: unknown,
  redact: (text: string) => string,
) => { error: TransientError | DeterministicError; rate?: RateSnapshot };

/**
 * The `mapError` of a vendor folder: an SDK error as a sluice error
 * (TransientError or DeterministicError), plus what its headers said about
 * rate limits.
 *
 * @example
 * export const mapError = sdkErrorMapper<APIError>({ provider: "openai", classes: { APIError, ... }, statusDetail, rateFromHeaders });
 */
export function sdkErrorMapper<ApiError extends SdkApiError>(vendor: SdkErrorVendor<ApiError>): MapSdkError {
  return (err, redact) => {
    const failure = describe(vendor, err);
    const rate = err instanceof vendor.classes.APIError ? vendor.rateFromHeaders(err.headers) : undefined;
    return { error: classifyFailure(vendor.provider, failure, redact), rate };
  };
}

function describe<ApiError extends SdkApiError>(vendor: SdkErrorVendor<ApiError>, err: unknown): ProviderFailure {
  const { APIError, APIUserAbortError, APIConnectionTimeoutError, APIConnectionError } = vendor.classes;
  // Order matters: the abort and timeout classes extend the connection error class.
  if (err instanceof APIUserAbortError) return { kind: "aborted", message: "request aborted", cause: err };
  if (err instanceof APIConnectionTimeoutError) return { kind: "timeout", message: "request timed out", cause: err };
  if (err instanceof APIConnectionError) {
    const why = err.cause instanceof Error ? `: ${err.cause.message}` : "";
    return { kind: "connection", message: `connection error${why}`, cause: err };
  }
  if (err instanceof APIError && typeof err.status === "number") {
    const { message, code } = vendor.statusDetail(err as ApiError & { status: number });
    return { kind: "status", status: err.status, message, code, headers: err.headers ?? undefined, cause: err };
  }
  return { kind: "other", message: err instanceof Error ? err.message : String(err), cause: err };
}

/**
 * A batch result that failed with an error code and no HTTP status.
 *
 * @example
 * batchCodeError("anthropic", "overloaded_error", "Overloaded", redact); // TransientError "anthropic: overloaded_error: Overloaded"
 */
export function batchCodeError(
  provider: string,
  code: string,
  message: string | null | undefined,
  redact: (text: string) => string,
): TransientError | DeterministicError {
  return classifyFailure(provider, { kind: "code", code, message: `${code}: ${message ?? "request failed in batch"}` }, redact);
}
