import { AsyncLocalStorage } from "node:async_hooks";
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib";
import { Agent, fetch as undiciFetch, type Dispatcher } from "undici";
import { fromMessage } from "./anthropic/wire.ts";
import { fromChatCompletion } from "./openai/wire.ts";
import type { CompletionResult } from "./types.ts";

/**
 * The HTTP boundary of the vendor SDKs. Both official clients are given this
 * `fetch` (undici's, with one interceptor), so sluice sees a realtime answer
 * the moment its last byte is parsed: in the same callback that read it from
 * the socket, before the SDK, JSON parsing or any await of sluice's. An
 * answer tap set around a call (`withAnswerTap`) receives the raw answer
 * there, and the engine journals it (see `engine/journal.ts`). A process
 * killed after that line loses nothing it paid for; one killed before it had
 * not read the answer, and the provider sees the connection reset.
 */

/** A 2xx answer to a realtime completion, as it came over the wire (decoded). */
export interface RawAnswer {
  /** The request path: `/v1/chat/completions` or `/v1/messages`. */
  path: string;
  body: string;
}

export type AnswerTap = (answer: RawAnswer) => void;

const taps = new AsyncLocalStorage<AnswerTap>();

/** Run `fn` (one realtime call) with `tap` receiving its answer as soon as it has arrived. */
export function withAnswerTap<T>(tap: AnswerTap | undefined, fn: () => Promise<T>): Promise<T> {
  return tap ? taps.run(tap, fn) : fn();
}

const COMPLETION_PATH = /\/(chat\/completions|messages)$/;

/** The completion a raw answer holds, or undefined when it is not one this tap records. */
export function completionFromRaw(answer: RawAnswer): CompletionResult | undefined {
  const path = answer.path.split("?")[0]!;
  const data = JSON.parse(answer.body);
  if (path.endsWith("/chat/completions")) return fromChatCompletion(data);
  if (path.endsWith("/messages")) return fromMessage(data);
  return undefined;
}

function decode(body: Buffer, encoding: string | undefined): string {
  switch (encoding?.trim().toLowerCase()) {
    case "gzip":
    case "x-gzip":
      return gunzipSync(body).toString("utf8");
    case "br":
      return brotliDecompressSync(body).toString("utf8");
    case "deflate":
      return inflateSync(body).toString("utf8");
    default:
      return body.toString("utf8");
  }
}

/** Calls the tap in effect when a completion request was dispatched with its 2xx body, once complete. */
function tapAnswers(dispatch: Dispatcher["dispatch"]): Dispatcher["dispatch"] {
  return (opts, handler) => {
    const tap = taps.getStore();
    if (!tap || opts.method !== "POST" || !COMPLETION_PATH.test(opts.path.split("?")[0]!)) return dispatch(opts, handler);
    let status = 0;
    let encoding: string | undefined;
    const chunks: Buffer[] = [];
    const wrapped: Dispatcher.DispatchHandlers = {
      onConnect: (abort) => handler.onConnect?.(abort),
      onError: (err) => handler.onError?.(err),
      onUpgrade: (statusCode, headers, socket) => handler.onUpgrade?.(statusCode, headers, socket),
      onBodySent: (size, total) => handler.onBodySent?.(size, total),
      onResponseStarted: () => handler.onResponseStarted?.(),
      onHeaders: (statusCode, headers, resume, statusText) => {
        status = statusCode;
        for (let i = 0; i + 1 < (headers?.length ?? 0); i += 2) {
          if (String(headers![i]).toLowerCase() === "content-encoding") encoding = String(headers![i + 1]);
        }
        return handler.onHeaders?.(statusCode, headers, resume, statusText) ?? true;
      },
      onData: (chunk) => {
        if (status >= 200 && status < 300) chunks.push(Buffer.from(chunk));
        return handler.onData?.(chunk) ?? true;
      },
      onComplete: (trailers) => {
        if (status >= 200 && status < 300) {
          // A failing tap must not lose the answer on its way to the SDK.
          try {
            tap({ path: opts.path, body: decode(Buffer.concat(chunks), encoding) });
          } catch {
            // The engine still keeps the answer once the call returns.
          }
        }
        handler.onComplete?.(trailers);
      },
    };
    return dispatch(opts, wrapped);
  };
}

let agent: Dispatcher | undefined;

/**
 * The `fetch` both SDK clients use: undici's own, through the answer tap.
 *
 * A body that is not a string (a batch file uploaded from disk) is sent
 * without the copy fetch keeps to follow a redirect: by the Fetch standard,
 * fetch sends a clone of the request unless it has no window and refuses
 * redirects, and cloning tees the body, so a stream read from disk was held
 * whole in memory until the upload ended (200 MB for a 200 MB batch). No
 * provider redirects an upload; one that did would fail the upload instead.
 */
export const sdkFetch: typeof globalThis.fetch = ((input: Parameters<typeof undiciFetch>[0], init?: Parameters<typeof undiciFetch>[1]) => {
  agent ??= new Agent().compose(tapAnswers);
  const streamed = init?.body != null && typeof init.body !== "string";
  return undiciFetch(input, { ...init, dispatcher: agent, ...(streamed ? { window: null, redirect: "error" as const } : {}) });
}) as unknown as typeof globalThis.fetch;
