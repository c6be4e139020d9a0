import type { ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { anthropicError, message, parseMessages } from "./anthropic.ts";
import { BatchRun, shouldExpire, type BatchItem, type ItemOutcome } from "./batches.ts";
import { draw } from "./faults.ts";
import { sendJson } from "./http.ts";
import { finalAnswer, honestAnswer, requestHash } from "./model.ts";
import type { SimState } from "./state.ts";

const CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;
const MAX_REQUESTS = 100_000;

/** One line's `result`, minus the expired and canceled kinds that need no processing. */
type Result =
  | { type: "succeeded"; message: unknown }
  | { type: "errored"; error: { type: "error"; error: { type: string; message: string } } };

type Run = BatchRun<Record<string, unknown>, Result>;

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
const notFound = (id: string) => anthropicError("not_found_error", `message_batch not found: ${id}`);

/** Anthropic's Message Batches API over an in-memory store. */
export class AnthropicBatches {
  private readonly batches = new Map<string, Run>();
  /** Batches whose end is already counted in the stats. */
  private readonly settled = new Set<string>();

  constructor(private readonly state: SimState) {}

  /** `POST /v1/messages/batches`. */
  create(res: ServerResponse, body: unknown, origin: string): void {
    const requests = (body as { requests?: unknown } | null)?.requests;
    const invalid = (msg: string) => sendJson(res, 400, anthropicError("invalid_request_error", msg));
    if (requests === undefined) return invalid("requests: Field required");
    if (!Array.isArray(requests)) return invalid("requests: Input should be a valid list");
    if (requests.length === 0) return invalid("requests: List should have at least 1 item after validation, not 0");
    if (requests.length > MAX_REQUESTS) return invalid(`requests: List should have at most ${MAX_REQUESTS} items after validation, not ${requests.length}`);
    const items: BatchItem<Record<string, unknown>>[] = [];
    const seen = new Set<string>();
    for (const [i, r] of (requests as { custom_id?: unknown; params?: unknown }[]).entries()) {
      const customId = r?.custom_id;
      if (typeof customId !== "string") return invalid(`requests.${i}.custom_id: Field required`);
      if (!CUSTOM_ID.test(customId)) return invalid(`requests.${i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'`);
      if (seen.has(customId)) return invalid(`requests: Duplicate custom_id found: '${customId}'. Each request in a batch must have a unique custom_id.`);
      if (!r.params || typeof r.params !== "object") return invalid(`requests.${i}.params: Field required`);
      seen.add(customId);
      items.push({ customId, input: r.params as Record<string, unknown> });
    }
    const { state } = this;
    const ordinal = ++state.batchOrdinal;
    const run: Run = new BatchRun(state.id("msgbatch_"), items, {
      expires: shouldExpire(state.config.batch, state.config.seed, ordinal),
      orderSeed: `${state.config.seed}:${ordinal}`,
      now: Date.now(),
      process: (item) => this.processItem(item),
    });
    this.batches.set(run.id, run);
    state.stats.batchCreated(items.length);
    sendJson(res, 200, this.batchObject(run, origin));
  }

  /** Params are checked when the request is processed, as Anthropic does: a bad one is an errored result. */
  private processItem(item: BatchItem<Record<string, unknown>>): ItemOutcome<Result> {
    const { state } = this;
    const errored = (type: string, msg: string): ItemOutcome<Result> => ({
      ok: false,
      out: { type: "errored", error: { type: "error", error: { type, message: msg } } },
    });
    const parsed = parseMessages(item.input);
    if (!parsed.ok) return errored(parsed.body.error.type, parsed.body.error.message);
    const hash = requestHash(item.input);
    state.stats.call(parsed.req.model, hash, item.customId);
    const d = draw(state.config.faults, state.config.seed, hash, state.nextAttempt(hash), "content");
    if (d.u3 < state.config.batch.failureRate) {
      state.stats.fault("batch_request_error");
      return errored("api_error", "Internal server error");
    }
    const a = finalAnswer(parsed.req, honestAnswer(parsed.req), d.fault as Parameters<typeof finalAnswer>[2], d.seed);
    if (a.fault) state.stats.fault(a.fault);
    state.stats.bill(hash, a.inputTokens, a.outputTokens, true);
    return { ok: true, out: { type: "succeeded", message: message(parsed.req, a, state.id("msg_"), state.id("toolu_")) } };
  }

  private lookup(res: ServerResponse, id: string, poll = true): Run | undefined {
    const run = this.batches.get(id);
    if (!run) sendJson(res, 404, notFound(id));
    else this.advance(run, poll);
    return run;
  }

  private advance(run: Run, poll: boolean): void {
    if (!run.ended) run.advance(Date.now(), this.state.config.batch, poll);
    if (run.ended && !this.settled.has(run.id)) {
      this.settled.add(run.id);
      const { stats } = this.state;
      stats.batchEnded(run.phase === "expired" ? "expired" : run.phase === "cancelled" ? "cancelled" : "completed");
      if (run.phase === "expired") stats.fault("batch_expired");
    }
  }

  /** `GET /v1/messages/batches`: newest first, `limit` per page (default 20, at most 1000), after the id `after_id`. */
  list(res: ServerResponse, query: URLSearchParams, origin: string): void {
    const all = [...this.batches.values()].reverse();
    const after = query.get("after_id");
    const start = after ? all.findIndex((r) => r.id === after) + 1 : 0;
    const limit = Math.min(1000, Math.max(1, Number(query.get("limit") ?? 20) || 20));
    const page = all.slice(start, start + limit);
    for (const run of page) this.advance(run, false);
    sendJson(res, 200, {
      data: page.map((run) => this.batchObject(run, origin)),
      has_more: start + limit < all.length,
      first_id: page[0]?.id ?? null,
      last_id: page.at(-1)?.id ?? null,
    });
  }

  /** `GET /v1/messages/batches/{id}`: each poll moves the batch along. */
  retrieve(res: ServerResponse, id: string, origin: string): void {
    const run = this.lookup(res, id);
    if (run) sendJson(res, 200, this.batchObject(run, origin));
  }

  /** `POST /v1/messages/batches/{id}/cancel`: an ended batch is returned as it is. */
  cancel(res: ServerResponse, id: string, origin: string): void {
    const run = this.lookup(res, id, false);
    if (!run) return;
    run.cancel(Date.now(), this.state.config.batch);
    this.advance(run, false);
    sendJson(res, 200, this.batchObject(run, origin));
  }

  /** `DELETE /v1/messages/batches/{id}`: only an ended batch can go. */
  remove(res: ServerResponse, id: string): void {
    const run = this.lookup(res, id);
    if (!run) return;
    if (!run.ended) {
      return sendJson(res, 400, anthropicError("invalid_request_error", `Cannot delete message batch ${id} while it is still processing. Cancel it first.`));
    }
    this.batches.delete(id);
    sendJson(res, 200, { id, type: "message_batch_deleted" });
  }

  /** `GET /v1/messages/batches/{id}/results`: JSONL, in no promised order. */
  async results(res: ServerResponse, id: string): Promise<void> {
    const run = this.batches.get(id);
    if (!run) return sendJson(res, 404, notFound(id));
    if (!run.ended) {
      return sendJson(res, 400, anthropicError("invalid_request_error", `Message batch ${id} is still processing; results are available once it has ended.`));
    }
    // Streamed a line at a time, as the client reads them: never one string of every result.
    const lines = function* () {
      for (const i of run.order()) {
        const r = run.results[i];
        const result = r ? r.out : run.phase === "expired" ? { type: "expired" } : { type: "canceled" };
        yield `${JSON.stringify({ custom_id: run.items[i]!.customId, result })}\n`;
      }
    };
    res.writeHead(200, { "content-type": "application/binary" });
    await pipeline(Readable.from(lines()), res);
  }

  private batchObject(run: Run, origin: string): unknown {
    const ended = run.ended;
    const rest = run.unprocessed;
    return {
      id: run.id,
      type: "message_batch",
      processing_status: ended ? "ended" : run.phase === "cancelling" ? "canceling" : "in_progress",
      request_counts: {
        processing: ended ? 0 : rest,
        succeeded: run.succeeded,
        errored: run.errored,
        canceled: ended && run.phase === "cancelled" ? rest : 0,
        expired: ended && run.phase === "expired" ? rest : 0,
      },
      ended_at: iso(run.endedAt),
      created_at: iso(run.createdAt),
      expires_at: iso(run.createdAt + 24 * 3600_000),
      archived_at: null,
      cancel_initiated_at: iso(run.cancellingAt),
      results_url: ended ? `${origin}/v1/messages/batches/${run.id}/results` : null,
    };
  }
}
