import { DeterministicError, TransientError } from "../core/errors.ts";
import { retryAfterMs, type HeaderBag } from "./limits/headers.ts";

/**
 * One switch from "what went wrong with a provider call" to sluice's failure
 * classes (`TransientError` or `DeterministicError`, src/core/errors.ts): the
 * vendor `errors.ts` files (through `sdk-errors.ts`) only say what happened in
 * their SDK's terms; this decides retry or not.
 */
export type ProviderFailure =
  | { kind: "aborted"; message: string; cause?: unknown }
  | { kind: "timeout"; message: string; cause?: unknown }
  | { kind: "connection"; message: string; cause?: unknown }
  | {
      kind: "status";
      status: number;
      message: string;
      /** Machine-readable code or type from the error body (`insufficient_quota`, `overloaded_error`). */
      code?: string;
      headers?: HeaderBag;
      cause?: unknown;
    }
  /** An error type in a batch result line: no HTTP status, just the provider's word for it. */
  | { kind: "code"; code: string; message: string }
  | { kind: "other"; message: string; cause?: unknown };

/** Worth another try later. 408 and 409 are the provider saying "not now", not "never". */
export function isTransientStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 425 || status === 429 || status === 499 || status >= 500;
}

/**
 * Statuses that are about the account or the endpoint, never about one
 * request's content: unauthorised (a revoked key), forbidden (no access to
 * the model), not found (a model or deployment that does not exist).
 */
const STAGE_WIDE_STATUSES = new Set([401, 403, 404]);

/** Provider codes that arrive with a transient-looking status but will not get better by waiting. */
const PERMANENT_CODES = new Set(["insufficient_quota", "billing_hard_limit_reached", "billing_not_active"]);

/** Error codes/types (batch lines, Anthropic error types) that mean "try again". */
const TRANSIENT_CODES = new Set([
  "batch_expired",
  "batch_cancelled",
  "batch_canceled",
  "expired",
  "canceled",
  "cancelled",
  "rate_limit_exceeded",
  "rate_limit_error",
  "overloaded_error",
  "api_error",
  "server_error",
  "timeout_error",
  "internal_error",
]);

export function classifyFailure(
  provider: string,
  failure: ProviderFailure,
  redact: (text: string) => string,
): TransientError | DeterministicError {
  const message = `${provider}: ${redact(failure.message)}`;
  const cause = "cause" in failure ? sanitizeCause(failure.cause, redact) : undefined;
  switch (failure.kind) {
    case "aborted":
    case "timeout":
    case "connection":
      return new TransientError(message, { cause });
    case "status": {
      // No quota or billing left: every request of the account fails alike.
      if (failure.code && PERMANENT_CODES.has(failure.code)) {
        return new DeterministicError(message, { status: failure.status, cause, stageWide: true });
      }
      if (isTransientStatus(failure.status)) {
        const wait = retryAfterMs(failure.headers) ?? hintedWaitMs(failure.message);
        return new TransientError(message, { status: failure.status, retryAfterMs: wait, cause });
      }
      return new DeterministicError(message, { status: failure.status, cause, stageWide: STAGE_WIDE_STATUSES.has(failure.status) });
    }
    case "code":
      return TRANSIENT_CODES.has(failure.code)
        ? new TransientError(message)
        : new DeterministicError(message);
    case "other":
      return new DeterministicError(message, { cause });
  }
}

/** OpenAI's 429 messages say "Please try again in 1.5s" even when no header does. */
function hintedWaitMs(message: string): number | undefined {
  const m = /try again in (\d+(?:\.\d+)?)(ms|s)\b/i.exec(message);
  if (!m) return undefined;
  return Math.ceil(Number(m[1]) * (m[2] === "ms" ? 1 : 1000));
}

/**
 * A secret-free stand-in for an SDK error, kept as `cause`: its class name,
 * status and message chain survive for debugging, nothing that might carry a
 * key (request options, headers objects) does.
 */
function sanitizeCause(cause: unknown, redact: (text: string) => string): Error | undefined {
  if (!(cause instanceof Error)) return undefined;
  const out = new Error(redact(cause.message));
  out.name = cause.name;
  const status = (cause as { status?: unknown }).status;
  if (typeof status === "number") Object.assign(out, { status });
  const requestId = (cause as { requestID?: unknown }).requestID;
  if (typeof requestId === "string") Object.assign(out, { requestId });
  if (cause.cause instanceof Error) Object.assign(out, { cause: sanitizeCause(cause.cause, redact) });
  return out;
}

/**
 * Remove API keys from text bound for errors and logs: the configured key
 * itself, and anything shaped like an OpenAI or Anthropic key.
 *
 * @example
 * redactor(["sk-live-123456"])("bad key sk-live-123456"); // "bad key [redacted]"
 */
export function redactor(secrets: (string | undefined)[]): (text: string) => string {
  const exact = secrets.filter((s): s is string => typeof s === "string" && s.length >= 6);
  return (text) => {
    let out = text;
    for (const s of exact) out = out.split(s).join("[redacted]");
    return out.replace(/\b(sk-(?:ant-|proj-)?[A-Za-z0-9_*-]{8,})/g, "[redacted]").replace(/(Bearer\s+)\S+/gi, "$1[redacted]");
  };
}
