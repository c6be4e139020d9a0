import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { draw, isTransport, latencyMs, type ContentFault } from "./faults.ts";
import { sendJson, sleep, type Headers } from "./http.ts";
import type { Admission, BucketReport } from "./limits.ts";
import { finalAnswer, honestAnswer, type Answer, type ModelRequest } from "./model.ts";
import type { SimState } from "./state.ts";

export type Rejection = Extract<Admission, { ok: false }>;

/** What differs between the OpenAI and Anthropic wire forms of one realtime call. */
export interface RealtimeWire {
  requestIdHeader: string;
  requestIdPrefix: string;
  limitHeaders(buckets: BucketReport[], now: number): Headers;
  /** A 429 from the buckets. */
  rejected(model: string, r: Rejection): { status: number; body: unknown };
  /** An injected error response. */
  injected(kind: "rate_limit" | "server_error" | "overloaded"): { status: number; body: unknown };
  success(req: ModelRequest, answer: Answer, id: string): unknown;
}

/**
 * One realtime model call: rate limits, latency, an injected fault or the
 * responder's answer. The buckets are charged with the answer's real token
 * counts, so the tokens-per-minute limit holds to the token.
 */
export async function serveRealtime(
  state: SimState,
  res: ServerResponse,
  req: ModelRequest,
  hash: string,
  wire: RealtimeWire,
): Promise<void> {
  const { config, stats } = state;
  // The client went away before its answer was sent (its process was killed).
  let gone = false;
  res.on("close", () => {
    if (!res.writableFinished) gone = true;
  });
  const socket = res.socket;
  // A new request on a kept-alive connection: the answer sent on it before was read.
  if (socket) state.unread.set(socket, undefined);
  const honest = honestAnswer(req);
  stats.call(req.model, hash);
  const now = Date.now();
  const admission = state.limiter.admit(req.model, honest.inputTokens, honest.outputTokens, now);
  const headers: Headers = {
    ...wire.limitHeaders(admission.buckets, now),
    [wire.requestIdHeader]: state.id(wire.requestIdPrefix),
  };
  if (!admission.ok) {
    stats.reject(req.model);
    const { status, body } = wire.rejected(req.model, admission);
    headers["retry-after"] = Math.max(1, Math.ceil(admission.retryAfterMs / 1000));
    headers["retry-after-ms"] = admission.retryAfterMs;
    sendJson(res, status, body, headers);
    return;
  }

  const d = draw(config.faults, config.seed, hash, state.nextAttempt(hash));
  if (d.fault === "timeout") {
    stats.fault("timeout");
    hold(state, res, config.timeoutHoldMs);
    return;
  }
  await sleep(latencyMs(config.latency, d.u2));
  if (d.fault === "connection_reset") {
    stats.fault("connection_reset");
    res.socket?.destroy();
    return;
  }
  if (d.fault !== undefined && isTransport(d.fault)) {
    stats.fault(d.fault);
    const { status, body } = wire.injected(d.fault);
    sendJson(res, status, body, { ...headers, "retry-after": 1 });
    return;
  }

  const answer = finalAnswer(req, honest, d.fault as ContentFault | undefined, d.seed);
  if (answer.fault) stats.fault(answer.fault);
  stats.bill(hash, answer.inputTokens, answer.outputTokens, false, `realtime ${req.model}`);
  // Gone before this handler could listen (the connection closed while the
  // request waited to be read), or while it waited.
  if (gone || !res.socket || res.socket.destroyed) stats.cutOffAnswer(hash);
  else if (socket) watchUnread(state, socket, hash);
  const id = headers[wire.requestIdHeader] as string;
  sendJson(res, 200, wire.success(req, answer, id), headers);
}

/** Never answer; drop the connection after `ms` unless the client gives up first. */
function hold(state: SimState, res: ServerResponse, ms: number): void {
  const timer = setTimeout(() => {
    state.held.delete(timer);
    res.socket?.destroy();
  }, ms);
  timer.unref();
  state.held.add(timer);
  res.on("close", () => {
    clearTimeout(timer);
    state.held.delete(timer);
  });
}

/**
 * An answer sent but never read: its client died with the answer still in
 * its socket's receive buffer, and the kernel then resets the connection
 * instead of closing it. Counted as cut off, like an answer the client was
 * gone for.
 */
function watchUnread(state: SimState, socket: Socket, hash: string): void {
  state.unread.set(socket, hash);
  if (state.unreadWatched.has(socket)) return;
  state.unreadWatched.add(socket);
  socket.on("close", (hadError) => {
    const unread = state.unread.get(socket);
    if (hadError && unread) state.stats.cutOffAnswer(unread);
  });
}
