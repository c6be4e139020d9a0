import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { parsePacket } from "@trigger.dev/core/v3";
import { workerRoutes } from "./fake-workers.ts";

/**
 * A loopback fake of the Trigger.dev HTTP API, as much of it as
 * @trigger.dev/sdk@4.8.3 uses to trigger runs: single triggers, the two-phase
 * batch API (create, then an NDJSON item stream), payload offload, run and
 * batch retrieval, cancellation. It records every request, dedupes by (task,
 * idempotency key) like the server: a failed run frees its key, a completed or
 * cancelled run keeps it until its TTL (`idempotencyKeyTTL`, default 30 days,
 * on the fake's clock) has passed. It refuses batches over 1,000 runs, and
 * executes queued runs in-process only when asked to, with the task's retry
 * budget, so tests decide when work happens.
 *
 * A run that waits (`wait.for` over 5 s, which the SDK sends here) is
 * suspended as on the platform: its executor returns {@link SUSPENDED}, the
 * run is `WAITING` and gives up the concurrency slots it held, and once the
 * wait is over it is executed again as a fresh invocation of the same
 * attempt, with nothing of the first invocation's memory (a process restored
 * elsewhere). The fake counts the slots each named concurrency limit has
 * taken (`held`, `peakHeld`), from the limits the harness says a task holds.
 *
 * Worker mode, where processes of their own take runs over HTTP, is in
 * `fake-workers.ts`.
 */

/** What an executor returns when the invocation was suspended at a wait. */
export const SUSPENDED = Symbol("suspended");

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  body: string;
}

export interface FakeRun {
  id: string;
  taskId: string;
  /** The payload as sent (serialized packet). */
  payload: unknown;
  options: Record<string, any>;
  batchId?: string;
  status: "QUEUED" | "EXECUTING" | "WAITING" | "COMPLETED" | "FAILED" | "CANCELED";
  /** Times the run was suspended at a wait and resumed in a fresh invocation. */
  suspensions: number;
  /** Waitpoints the run created (`wait.for`), with the date each ends. */
  waits: { id: string; until: string }[];
  /** Worker mode: the worker of each invocation, in order. */
  workers?: string[];
  /** The output as the task serialized it (worker mode). */
  outputPacket?: { data?: string; dataType: string };
  /** When its idempotency key stops deduplicating (fake clock, ms). */
  keyExpiresAt?: number;
  attempts: number;
  /** Accepted while the fake was on hold: recorded, never executed. */
  held?: boolean;
  output?: unknown;
  error?: { message: string };
}

export interface FakeBatch {
  id: string;
  runCount: number;
  runIds: string[];
  body: any;
}

/** Executes one attempt of a run; the value becomes its output, a throw fails the attempt, {@link SUSPENDED} suspends it. */
export type RunExecutor = (taskId: string, payload: unknown, run: FakeRun, attempt: number) => Promise<unknown>;

export interface FakeTriggerApi {
  url: string;
  requests: RecordedRequest[];
  runs: Map<string, FakeRun>;
  batches: Map<string, FakeBatch>;
  packets: Map<string, { contentType: string; data: string }>;
  /** While true, runs are accepted and recorded but never executed (not even later). */
  hold: boolean;
  /** Execute these runs if still queued (retrying a failed attempt up to the task's budget). */
  execute(runIds: string[]): Promise<void>;
  /** Execute queued runs, including those queued meanwhile, until none is left. */
  drain(): Promise<number>;
  /** The run's payload, decoded as the task receives it. */
  payloadOf(run: FakeRun): Promise<unknown>;
  /** Cancel a run that has not finished: it keeps its idempotency key, like the platform's. */
  cancel(runId: string): boolean;
  /** Move the fake's clock on (idempotency key TTLs). */
  advance(ms: number): void;
  /** Runs holding a slot of this named concurrency limit now (executing, not waiting). */
  held(limit: string): string[];
  /** The most runs that held this limit at once. */
  peakHeld(limit: string): number;
  close(): Promise<void>;
}

export interface FakeTriggerOptions {
  executor?: RunExecutor;
  /** Attempts a task gets (its `retry.maxAttempts`); default 1. */
  maxAttempts?: (taskId: string) => number;
  maxBatchItems?: number;
  /** Named concurrency limits a task's runs hold while they execute. */
  limitsOf?: (taskId: string) => string[];
  /** Called when a run is suspended at a wait (before it resumes). */
  onSuspend?: (run: FakeRun) => void | Promise<void>;
  /** A suspended run whose restore fails: the attempt fails instead of resuming. */
  failResume?: (run: FakeRun) => boolean;
  /** Runs of a named limit allowed at once (worker mode): a run is handed out only while its limits have room. */
  limitTotal?: (limit: string) => number | undefined;
  /** Worker mode: a run whose worker has not beaten for this long has lost its attempt (default 5,000 ms: a worker on a loaded machine may not beat for a second or two). */
  workerLeaseMs?: number;
}

export async function startFakeTriggerApi(opts: FakeTriggerOptions = {}): Promise<FakeTriggerApi> {
  let seq = 0;
  const nextId = (prefix: string) => `${prefix}_${(++seq).toString(36).padStart(8, "0")}`;
  const byKey = new Map<string, string>();
  const pending: string[] = [];
  const requests: RecordedRequest[] = [];
  const runs = new Map<string, FakeRun>();
  const batches = new Map<string, FakeBatch>();
  const packets = new Map<string, { contentType: string; data: string }>();
  const maxBatchItems = opts.maxBatchItems ?? 1000;
  let url = "";
  let clockOffset = 0;
  const now = () => Date.now() + clockOffset;

  const payloadOf = async (run: FakeRun) => {
    if (run.options.payloadType === "application/store") {
      const stored = packets.get(String(run.payload));
      if (!stored) throw new Error(`unknown packet ${String(run.payload)}`);
      return parsePacket({ data: stored.data, dataType: stored.contentType });
    }
    return parsePacket({ data: run.payload as string, dataType: run.options.payloadType ?? "application/json" });
  };

  const createRun = (taskId: string, payload: unknown, options: Record<string, any> = {}, batchId?: string) => {
    const key = options.idempotencyKey ? `${taskId}:${options.idempotencyKey}` : undefined;
    const existing = key ? runs.get(byKey.get(key) ?? "") : undefined;
    if (existing && existing.status !== "FAILED" && (existing.keyExpiresAt ?? Infinity) > now()) return { run: existing, isCached: true };
    const ttl = key ? ttlMs(options.idempotencyKeyTTL) : undefined;
    const run: FakeRun = {
      id: nextId("run"), taskId, payload, options, batchId, status: "QUEUED", attempts: 0, held: api.hold || undefined, suspensions: 0, waits: [],
      keyExpiresAt: ttl === undefined ? undefined : now() + ttl,
    };
    runs.set(run.id, run);
    if (!run.held) pending.push(run.id);
    if (key) byKey.set(key, run.id);
    return { run, isCached: false };
  };

  const holding = new Map<string, Set<string>>();
  const peaks = new Map<string, number>();
  const take = (run: FakeRun) => {
    for (const limit of opts.limitsOf?.(run.taskId) ?? []) {
      const set = holding.get(limit) ?? new Set<string>();
      holding.set(limit, set.add(run.id));
      peaks.set(limit, Math.max(peaks.get(limit) ?? 0, set.size));
    }
  };
  const release = (run: FakeRun) => {
    for (const set of holding.values()) set.delete(run.id);
  };

  const executeRun = async (run: FakeRun) => {
    if (run.status !== "QUEUED" || run.held || !opts.executor) return;
    const budget = opts.maxAttempts?.(run.taskId) ?? 1;
    const payload = await payloadOf(run);
    let resumed = false;
    for (;;) {
      run.status = "EXECUTING";
      take(run);
      if (!resumed) run.attempts++;
      resumed = false;
      try {
        const output = await opts.executor(run.taskId, payload, run, run.attempts);
        if ((run.status as FakeRun["status"]) === "CANCELED") return; // cancelled while executing: its outcome is dropped
        if (output === SUSPENDED) {
          // Checkpointed at a wait: no slot held until it resumes, in a fresh invocation of the same attempt.
          run.status = "WAITING";
          release(run);
          run.suspensions++;
          await opts.onSuspend?.(run);
          if ((run.status as FakeRun["status"]) === "CANCELED") return;
          if (opts.failResume?.(run)) {
            // Its checkpoint could not be restored: the attempt failed, and the task's retry budget decides.
            run.error = { message: `run ${run.id} could not be restored after its wait` };
            if (run.attempts >= budget) {
              run.status = "FAILED";
              return;
            }
            continue;
          }
          resumed = true;
          continue;
        }
        run.output = output;
        run.status = "COMPLETED";
        run.error = undefined;
        return;
      } catch (err) {
        if ((run.status as FakeRun["status"]) === "CANCELED") return;
        run.error = { message: err instanceof Error ? err.message : String(err) };
        const abort = err instanceof Error && err.name === "AbortTaskRunError";
        if (abort || run.attempts >= budget) {
          run.status = "FAILED";
          return;
        }
      } finally {
        release(run);
      }
    }
  };

  const json = (res: ServerResponse, status: number, body: unknown) => {
    // x-trigger-jwt spares the SDK from signing a public access token with the secret key.
    res.writeHead(status, { "content-type": "application/json", "x-trigger-jwt": "fake.jwt.token" });
    res.end(JSON.stringify(body));
  };

  const runView = (run: FakeRun) => {
    const now = new Date().toISOString();
    return {
      id: run.id, status: run.status, taskIdentifier: run.taskId, idempotencyKey: run.options.idempotencyKey,
      isQueued: run.status === "QUEUED", isExecuting: run.status === "EXECUTING", isWaiting: run.status === "WAITING",
      isCompleted: run.status === "COMPLETED" || run.status === "FAILED" || run.status === "CANCELED", isSuccess: run.status === "COMPLETED",
      isFailed: run.status === "FAILED", isCancelled: run.status === "CANCELED", isTest: false, createdAt: now, updatedAt: now,
      tags: run.options.tags ?? [], costInCents: 0, baseCostInCents: 0, durationMs: 0, depth: 0,
      triggerFunction: run.batchId ? "batchTrigger" : "trigger", batchId: run.batchId,
      output: run.output, error: run.error, relatedRuns: {}, attemptCount: run.attempts,
    };
  };

  const route = (method: string, path: string, body: string, req: IncomingMessage, res: ServerResponse) => {
    let m: RegExpMatchArray | null;
    if (method === "POST" && (m = path.match(/^\/api\/v1\/tasks\/([^/]+)\/trigger$/))) {
      const b = JSON.parse(body);
      const { run, isCached } = createRun(decodeURIComponent(m[1]!), b.payload, b.options);
      return json(res, 200, { id: run.id, isCached });
    }
    if (method === "POST" && path === "/api/v3/batches") {
      const b = JSON.parse(body);
      if (b.runCount > maxBatchItems) return json(res, 400, { error: `Batch runCount of ${b.runCount} exceeds maximum allowed of ${maxBatchItems}.` });
      const batch: FakeBatch = { id: nextId("batch"), runCount: b.runCount, runIds: [], body: b };
      batches.set(batch.id, batch);
      return json(res, 202, { id: batch.id, runCount: batch.runCount, isCached: false });
    }
    if (method === "POST" && (m = path.match(/^\/api\/v3\/batches\/([^/]+)\/items$/))) {
      const batch = batches.get(m[1]!);
      if (!batch) return json(res, 404, { error: "batch not found" });
      let accepted = 0;
      let deduplicated = 0;
      for (const line of body.split("\n")) {
        if (!line.trim()) continue;
        const item = JSON.parse(line);
        const { run, isCached } = createRun(item.task, item.payload, item.options, batch.id);
        batch.runIds[item.index] = run.id;
        if (isCached) deduplicated++;
        else accepted++;
      }
      return json(res, 200, { id: batch.id, itemsAccepted: accepted, itemsDeduplicated: deduplicated, sealed: true });
    }
    if (method === "POST" && (m = path.match(/^\/engine\/v1\/runs\/([^/]+)\/wait\/duration$/))) {
      const run = runs.get(m[1]!);
      if (!run) return json(res, 404, { error: "run not found" });
      const until = new Date(JSON.parse(body).date).toISOString();
      const waitpoint = { id: nextId("waitpoint"), until };
      run.waits.push(waitpoint);
      return json(res, 200, { waitUntil: until, waitpoint: { id: waitpoint.id } });
    }
    if (method === "PUT" && (m = path.match(/^\/api\/v2\/packets\/(.+)$/))) {
      const name = decodeURIComponent(m[1]!);
      return json(res, 200, { presignedUrl: `${url}/__store/${encodeURIComponent(name)}`, storagePath: name });
    }
    if (method === "GET" && (m = path.match(/^\/api\/v1\/packets\/(.+)$/))) return json(res, 200, { presignedUrl: `${url}/__store/${m[1]}` });
    if ((m = path.match(/^\/__store\/(.+)$/))) {
      const name = decodeURIComponent(m[1]!);
      if (method === "PUT") {
        packets.set(name, { contentType: String(req.headers["content-type"] ?? "application/json"), data: body });
        res.writeHead(200).end();
        return;
      }
      const p = packets.get(name);
      if (!p) return json(res, 404, { error: "no such packet" });
      res.writeHead(200, { "content-type": p.contentType }).end(p.data);
      return;
    }
    if (method === "POST" && (m = path.match(/^\/api\/v1\/runs\/([^/]+)\/tags$/))) {
      const run = runs.get(m[1]!);
      if (!run) return json(res, 404, { error: "run not found" });
      const added = ([] as string[]).concat(JSON.parse(body).tags ?? []);
      run.options.tags = [...new Set([...(run.options.tags ?? []), ...added])];
      return json(res, 200, { message: `set ${added.length} tags` });
    }
    if (method === "POST" && (m = path.match(/^\/api\/v2\/runs\/([^/]+)\/cancel$/))) {
      const run = runs.get(m[1]!);
      if (!run) return json(res, 404, { error: "run not found" });
      api.cancel(run.id);
      return json(res, 200, { id: run.id });
    }
    if (method === "GET" && (m = path.match(/^\/api\/v3\/runs\/([^/]+)$/))) {
      const run = runs.get(m[1]!);
      return run ? json(res, 200, runView(run)) : json(res, 404, { error: "run not found" });
    }
    if (method === "GET" && (m = path.match(/^\/api\/v2\/batches\/([^/]+)$/))) {
      const batch = batches.get(m[1]!);
      if (!batch) return json(res, 404, { error: "batch not found" });
      const now = new Date().toISOString();
      return json(res, 200, { id: batch.id, status: "COMPLETED", createdAt: now, updatedAt: now, runCount: batch.runCount, runs: batch.runIds, processing: { errors: [] } });
    }
    if (path.startsWith("/__fake/")) return workerRoute(method, path, body ? JSON.parse(body) : {}, res);
    // What the trigger.dev CLI asks before a deploy (see README, "Tested without the platform").
    if (method === "GET" && path === "/api/v2/whoami") return json(res, 200, { userId: "user_fake", email: "dev@example.com", dashboardUrl: url });
    if (method === "GET" && (m = path.match(/^\/api\/v1\/projects\/([^/]+)\/([^/]+)$/))) {
      return json(res, 200, { apiKey: `tr_${m[2]}_fake`, name: m[2], apiUrl: url, projectId: m[1] });
    }
    json(res, 404, { error: `fake trigger: no route for ${method} ${path}` });
  };

  const workerRoute = workerRoutes({ runs, batches, pending, holding, opts, take, release, payloadOf, json });

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const path = (req.url ?? "/").split("?")[0]!;
      const method = req.method ?? "GET";
      requests.push({ method, path, headers: req.headers, body });
      Promise.resolve()
        .then(() => route(method, path, body, req, res))
        .catch((err: unknown) => {
          res.writeHead(500, { "content-type": "application/json", "x-should-retry": "false" });
          res.end(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }));
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const api: FakeTriggerApi = {
    url, requests, runs, batches, packets, payloadOf, hold: false,
    cancel(runId) {
      const run = runs.get(runId);
      if (!run || (run.status !== "QUEUED" && run.status !== "EXECUTING" && run.status !== "WAITING")) return false;
      run.status = "CANCELED";
      return true;
    },
    advance(ms) {
      clockOffset += ms;
    },
    held: (limit) => [...(holding.get(limit) ?? [])],
    peakHeld: (limit) => peaks.get(limit) ?? 0,
    async execute(runIds) {
      for (const id of runIds) {
        const run = runs.get(id);
        if (run) await executeRun(run);
      }
    },
    async drain() {
      let n = 0;
      for (let id = pending.shift(); id !== undefined; id = pending.shift()) {
        const run = runs.get(id)!;
        if (run.status !== "QUEUED") continue;
        await executeRun(run);
        n++;
      }
      return n;
    },
    close: () => new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve()))),
  };
  return api;
}

/** `"30s"`, `"5m"`, `"2h"`, `"3d"` in ms; the platform's default for a key is 30 days. */
function ttlMs(ttl: unknown): number {
  const m = typeof ttl === "string" ? /^(\d+)([smhd])$/.exec(ttl) : null;
  if (!m) return 30 * 24 * 3600_000;
  return Number(m[1]) * { s: 1_000, m: 60_000, h: 3600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
}
