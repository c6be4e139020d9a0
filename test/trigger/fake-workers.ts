import type { ServerResponse } from "node:http";
import { parsePacket } from "@trigger.dev/core/v3";
import type { FakeBatch, FakeRun, FakeTriggerOptions } from "./fake-api.ts";

/**
 * The fake Trigger.dev API's worker mode (see `fake-api.ts`): processes of
 * their own (test/trigger/worker.ts) take runs over HTTP (`/__fake/dequeue`),
 * one at a time each, while the named limits they hold have room, beat, and
 * report each invocation completed, failed or suspended. A worker that stops
 * beating (killed) loses the attempt it was running, which is retried on
 * another worker within the task's budget.
 */
export interface FakeRunState {
  runs: Map<string, FakeRun>;
  batches: Map<string, FakeBatch>;
  /** Run ids queued (or suspended and due to resume), in order. */
  pending: string[];
  /** Runs holding each named concurrency limit now. */
  holding: Map<string, Set<string>>;
  opts: FakeTriggerOptions;
  take(run: FakeRun): void;
  release(run: FakeRun): void;
  payloadOf(run: FakeRun): Promise<unknown>;
  json(res: ServerResponse, status: number, body: unknown): void;
}

/** The `/__fake/` routes workers call, over the fake's runs. */
export function workerRoutes({ runs, batches, pending, holding, opts, take, release, payloadOf, json }: FakeRunState) {
  const leaseMs = opts.workerLeaseMs ?? 5_000;
  const beats = new Map<string, number>();
  const runningOn = new Map<string, string>();
  const resumeNext = new Set<string>();
  /** The attempt on a worker ended badly: retried (queued again) within the task's budget, or failed. */
  const attemptFailed = (run: FakeRun, message: string, abort: boolean) => {
    release(run);
    runningOn.delete(run.id);
    run.error = { message };
    if (abort || run.attempts >= (opts.maxAttempts?.(run.taskId) ?? 1)) run.status = "FAILED";
    else {
      run.status = "QUEUED";
      pending.push(run.id);
    }
  };
  const reap = () => {
    for (const [runId, worker] of runningOn) {
      if ((beats.get(worker) ?? 0) > Date.now() - leaseMs) continue;
      const run = runs.get(runId)!;
      if (run.status === "EXECUTING") attemptFailed(run, `worker ${worker} was lost while running attempt ${run.attempts}`, false);
      else runningOn.delete(runId);
    }
  };
  const hasRoom = (run: FakeRun) => (opts.limitsOf?.(run.taskId) ?? []).every((l) => (holding.get(l)?.size ?? 0) < (opts.limitTotal?.(l) ?? Infinity));
  return async (method: string, path: string, b: Record<string, any>, res: ServerResponse) => {
    let m: RegExpMatchArray | null;
    if (method === "POST" && path === "/__fake/beat") {
      beats.set(b.worker, Date.now());
      return json(res, 200, {});
    }
    if (method === "POST" && path === "/__fake/dequeue") {
      beats.set(b.worker, Date.now());
      reap();
      const index = pending.findIndex((id) => {
        const run = runs.get(id)!;
        return (run.status === "QUEUED" || (run.status === "WAITING" && resumeNext.has(id))) && !run.held && hasRoom(run);
      });
      if (index < 0) return json(res, 200, { run: null });
      const run = runs.get(pending.splice(index, 1)[0]!)!;
      if (!resumeNext.delete(run.id)) run.attempts++;
      run.status = "EXECUTING";
      take(run);
      runningOn.set(run.id, b.worker);
      (run.workers ??= []).push(b.worker);
      return json(res, 200, { run: { id: run.id, taskId: run.taskId, attempt: run.attempts, payload: await payloadOf(run) } });
    }
    const run = (m = path.match(/^\/__fake\/runs\/([^/]+)\/(complete|fail|suspend)$/)) ? runs.get(m[1]!) : undefined;
    if (m && run) {
      // A report from a worker that no longer holds the run (it was reaped) is dropped.
      if (runningOn.get(run.id) !== b.worker || run.status !== "EXECUTING") return json(res, 409, { error: "not this worker's run" });
      if (m[2] === "complete") {
        release(run);
        runningOn.delete(run.id);
        run.outputPacket = b.output;
        run.output = b.output?.data === undefined ? undefined : await parsePacket({ data: b.output.data, dataType: b.output.dataType });
        run.status = "COMPLETED";
        run.error = undefined;
      } else if (m[2] === "fail") {
        attemptFailed(run, b.message, b.name === "AbortTaskRunError");
      } else {
        release(run);
        runningOn.delete(run.id);
        run.status = "WAITING";
        run.suspensions++;
        resumeNext.add(run.id);
        pending.push(run.id);
      }
      return json(res, 200, {});
    }
    if (method === "GET" && (m = path.match(/^\/__fake\/batches\/([^/]+)$/))) {
      const batch = batches.get(m[1]!);
      if (!batch) return json(res, 404, { error: "batch not found" });
      const members = batch.runIds.map((id) => runs.get(id)!);
      const done = members.length === batch.runCount && members.every((r) => r.status === "COMPLETED" || r.status === "FAILED" || r.status === "CANCELED");
      const items = done
        ? members.map((r) =>
            r.status === "COMPLETED"
              ? { ok: true, id: r.id, taskIdentifier: r.taskId, output: r.outputPacket?.data, outputType: r.outputPacket?.dataType ?? "application/json" }
              : { ok: false, id: r.id, taskIdentifier: r.taskId, error: { type: "STRING_ERROR", raw: r.error?.message ?? r.status } },
          )
        : [];
      return json(res, 200, { done, items });
    }
    json(res, 404, { error: `fake trigger: no route for ${method} ${path}` });
  };
}

