import { configure } from "@trigger.dev/sdk";
import { resourceCatalog, stringifyIO } from "@trigger.dev/core/v3";
import { runInMockTaskContext } from "@trigger.dev/core/v3/test";
import type { RuntimeManager } from "@trigger.dev/core/v3/workers";
import ticketTriage from "../../pipelines/ticket-triage.ts";
import { configureTriggerRunner, defineSluiceTasks } from "../../src/runners/trigger/index.ts";
import { openDatabase } from "../../src/store/index.ts";
import { createInProcessProvider, singleProvider } from "../../src/testing/index.ts";
import { installTaskCatalog } from "./harness.ts";

/**
 * One Trigger.dev worker process for the fake API's worker mode: it defines
 * the demo pipeline's tasks as a deployed worker would, then takes runs one
 * at a time (`/__fake/dequeue`), executes each in a task context of its own,
 * and reports it completed, failed, or suspended at a wait (the invocation is
 * then left behind; another worker resumes the run afresh). An orchestrator's
 * `batchTriggerAndWait` waits here until the fake has every run of the batch.
 *
 * Environment: FAKE_URL, DATABASE_URL, WORKER_ID, CHUNK_SIZE, and DIE_ON
 * (`<task id>:<chunk>`): this worker kills itself (SIGKILL) DIE_AFTER_MS after
 * it starts the first attempt of that chunk's run.
 */

const env = process.env;
const fake = env.FAKE_URL!;
const worker = env.WORKER_ID!;

installTaskCatalog();
defineSluiceTasks([ticketTriage]);
configure({ secretKey: "tr_dev_sluice_test", baseURL: fake, requestOptions: { retry: { maxAttempts: 1 } } });
const db = await openDatabase({ url: env.DATABASE_URL!, pool: { max: 4, idleTimeoutS: 30, maxLifetimeS: 600 } });
configureTriggerRunner({ db, providers: singleProvider(createInProcessProvider()), chunkSize: Number(env.CHUNK_SIZE ?? 20), engine: { leaseMs: 1_000 } });

const call = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${fake}${path}`, { method, headers: { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify({ worker, ...(body as object) }) });
  return res.json() as Promise<any>;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
setInterval(() => void call("POST", "/__fake/beat", {}).catch(() => {}), 200);

const SUSPENDED = Symbol("suspended");

async function execute(run: { id: string; taskId: string; attempt: number; payload: any }) {
  const task = resourceCatalog.getTask(run.taskId);
  if (!task) return call("POST", `/__fake/runs/${run.id}/fail`, { message: `no task ${run.taskId} on worker ${worker}`, name: "AbortTaskRunError" });
  const [dieTask, dieChunk] = (env.DIE_ON ?? "").split(":");
  if (run.taskId === dieTask && String(run.payload?.chunk) === dieChunk && run.attempt === 1) {
    setTimeout(() => process.kill(process.pid, "SIGKILL"), Number(env.DIE_AFTER_MS ?? 30));
  }
  let suspend!: () => void;
  const suspension = new Promise<typeof SUSPENDED>((resolve) => (suspend = () => resolve(SUSPENDED)));
  const controller = new AbortController();
  const runtimeManager: RuntimeManager = {
    disable() {},
    async waitForTask({ id }) {
      throw new Error(`sluice tasks do not wait on single runs (${id})`);
    },
    async waitForBatch({ id }) {
      for (;;) {
        const batch = await call("GET", `/__fake/batches/${id}`);
        if (batch.done) return { id, items: batch.items };
        await sleep(100);
      }
    },
    async waitForWaitpoint() {
      // Checkpointed: this process never goes on with the run.
      controller.abort(new Error("suspended"));
      suspend();
      return new Promise<never>(() => {});
    },
  };
  try {
    const output = await Promise.race([
      runInMockTaskContext(({ ctx }) => task.fns.run(run.payload, { ctx, signal: controller.signal }), { ctx: { run: { id: run.id }, attempt: { number: run.attempt } } as never, runtimeManager }),
      suspension,
    ]);
    if (output === SUSPENDED) return call("POST", `/__fake/runs/${run.id}/suspend`, {});
    return call("POST", `/__fake/runs/${run.id}/complete`, { output: await stringifyIO(output) });
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    return call("POST", `/__fake/runs/${run.id}/fail`, { message: e.message, name: e.name });
  }
}

for (;;) {
  const next = await call("POST", "/__fake/dequeue", {}).catch(() => undefined);
  if (!next?.run) {
    await sleep(50);
    continue;
  }
  await execute(next.run);
}
