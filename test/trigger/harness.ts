import { configure, metadata } from "@trigger.dev/sdk";
import { logger, resourceCatalog, stringifyIO } from "@trigger.dev/core/v3";
import { runInMockTaskContext } from "@trigger.dev/core/v3/test";
import { StandardResourceCatalog, type RuntimeManager } from "@trigger.dev/core/v3/workers";
import { startFakeTriggerApi, type FakeRun, type FakeTriggerApi } from "./fake-api.ts";

/**
 * Runs Trigger.dev tasks in this process the way a worker would: task
 * functions come from the SDK's own task catalog (what `task()` registered),
 * orchestrators run inside a mock task context whose runtime manager makes
 * `batchTriggerAndWait` wait for the fake API to execute the batch, and every
 * trigger goes over HTTP to the loopback fake.
 */

/**
 * Install a fresh task catalog. `task()` registers nothing into the SDK's
 * default no-op catalog, and only with a file context set (what the worker's
 * indexer does per file), so call this before defining tasks.
 */
export function installTaskCatalog(file = "trigger/sluice.ts"): void {
  resourceCatalog.disable();
  resourceCatalog.setGlobalResourceCatalog(new StandardResourceCatalog());
  resourceCatalog.setCurrentFileContext(file, file);
}

export interface Execution {
  runId: string;
  taskId: string;
  attempt: number;
  payload: any;
}

export interface HarnessFaults {
  /**
   * The orchestrator's worker dies during its `wait`-th `batchTriggerAndWait`
   * (counted across the harness), after `afterRuns` of that batch's runs have
   * executed (all of them when absent). The rest stay queued.
   */
  crash?: { wait: number; afterRuns?: number };
  /** Fail an attempt of a stage run after its function finished (as if the worker died before reporting). */
  failAfterRun?: (execution: Execution) => boolean;
  /** Fail an attempt before its function starts (a worker that never came up). */
  failBeforeRun?: (execution: Execution) => boolean;
  /** Cancel the run before this attempt starts (someone cancelled it in the dashboard); it keeps its idempotency key. */
  cancel?: (execution: Execution) => boolean;
  /** The abort signal an attempt gets; aborting it stops the run mid-way (a worker shut down). */
  signal?: (execution: Execution) => AbortSignal | undefined;
}

export interface TriggerHarness {
  fake: FakeTriggerApi;
  executions: Execution[];
  faults: HarnessFaults;
  /** `batchTriggerAndWait` calls so far, across orchestrators (for placing a crash). */
  waitCount(): number;
  /** Run an orchestrator task's function as Trigger.dev run `runId` (same id = a retried attempt). */
  runTask(taskId: string, payload: unknown, runId: string, attempt?: number): Promise<any>;
  /** Call `fn` inside a mock task context (as Trigger.dev run `runId`), with the fake-backed runtime manager. */
  inTaskContext<T>(fn: () => Promise<T>, runId?: string): Promise<T>;
  /** The run metadata a task run held when its last attempt ended (what the dashboard shows). */
  metadataOf(runId: string): Record<string, unknown> | undefined;
  /** Execute everything queued on the fake (downstream pipelines, scheduled runs). */
  drain(): Promise<number>;
  close(): Promise<void>;
}

export class WorkerCrash extends Error {
  override name = "WorkerCrash";
}

/** Tasks that call trigger/wait functions and so need a task context. */
const needsContext = (taskId: string) => !taskId.includes("--") || taskId.endsWith("--schedule");

export async function startTriggerHarness(options: { execute?: boolean; faults?: HarnessFaults } = {}): Promise<TriggerHarness> {
  const executions: Execution[] = [];
  const metadataByRun = new Map<string, Record<string, unknown>>();
  const faults: HarnessFaults = options.faults ?? {};
  let waits = 0;
  let inContext = false;

  const inTaskContext = async <T>(fn: (ctx: any) => Promise<T>, runId: string, attempt = 1): Promise<T> => {
    // Task contexts are process globals: one at a time, as in a real worker.
    if (inContext) throw new Error(`run ${runId} would start inside another task's context`);
    inContext = true;
    try {
      return await runInMockTaskContext(
        async ({ ctx }) => {
          try {
            return await fn(ctx);
          } finally {
            metadataByRun.set(runId, { ...(metadata.current() ?? {}) });
          }
        },
        { ctx: { run: { id: runId }, attempt: { number: attempt } }, runtimeManager },
      );
    } finally {
      inContext = false;
    }
  };

  const runIn = async (taskId: string, payload: unknown, runId: string, attempt: number, signal = new AbortController().signal) => {
    const task = resourceCatalog.getTask(taskId);
    if (!task) throw new Error(`no task ${taskId} in the catalog`);
    if (!needsContext(taskId)) {
      return task.fns.run(payload, { ctx: { run: { id: runId }, attempt: { number: attempt } } as any, signal });
    }
    return inTaskContext((ctx) => task.fns.run(payload, { ctx, signal }), runId, attempt);
  };

  const executor = async (taskId: string, payload: unknown, run: FakeRun, attempt: number) => {
    const execution = { runId: run.id, taskId, attempt, payload };
    executions.push(execution);
    if (faults.cancel?.(execution)) {
      fake.cancel(run.id);
      throw new Error(`run ${run.id} was cancelled`);
    }
    if (faults.failBeforeRun?.(execution)) throw new WorkerCrash(`worker for ${taskId} attempt ${attempt} never started`);
    const output = await runIn(taskId, payload, run.id, attempt, faults.signal?.(execution));
    if (faults.failAfterRun?.(execution)) throw new WorkerCrash(`worker lost after ${taskId} attempt ${attempt}`);
    return output;
  };

  const fake = await startFakeTriggerApi({
    executor: options.execute === false ? undefined : executor,
    maxAttempts: (taskId) => (resourceCatalog.getTaskManifest(taskId) as { retry?: { maxAttempts?: number } } | undefined)?.retry?.maxAttempts ?? 1,
  });

  const runtimeManager: RuntimeManager = {
    disable() {},
    async waitForWaitpoint() {
      throw new Error("sluice tasks do not wait on waitpoints");
    },
    async waitForTask({ id }) {
      throw new Error(`sluice tasks do not wait on single runs (${id})`);
    },
    async waitForBatch({ id }) {
      waits++;
      const batch = fake.batches.get(id);
      if (!batch) throw new Error(`no batch ${id}`);
      if (faults.crash?.wait === waits) {
        await fake.execute(batch.runIds.slice(0, faults.crash.afterRuns ?? batch.runIds.length));
        throw new WorkerCrash(`orchestrator died waiting on batch ${id}`);
      }
      await fake.execute(batch.runIds);
      const items = await Promise.all(
        batch.runIds.map(async (runId) => {
          const run = fake.runs.get(runId)!;
          if (run.status !== "COMPLETED") {
            return { ok: false as const, id: runId, taskIdentifier: run.taskId, error: { type: "STRING_ERROR" as const, raw: run.error?.message ?? run.status } };
          }
          const packet = await stringifyIO(run.output);
          return { ok: true as const, id: runId, taskIdentifier: run.taskId, output: packet.data, outputType: packet.dataType };
        }),
      );
      return { id, items };
    },
  };

  // One attempt per request: a test should see a refused request, not wait through backoff.
  configure({ secretKey: "tr_dev_sluice_test", baseURL: fake.url, requestOptions: { retry: { maxAttempts: 1 } } });

  return {
    fake,
    executions,
    faults,
    waitCount: () => waits,
    metadataOf: (runId) => metadataByRun.get(runId),
    runTask: (taskId, payload, runId, attempt = 1) => runIn(taskId, payload, runId, attempt),
    inTaskContext: (fn, runId = "run_test_context") => inTaskContext(() => fn(), runId),
    drain: () => fake.drain(),
    close: () => fake.close(),
  };
}

export interface LogLine {
  level: "debug" | "log" | "info" | "warn" | "error";
  message: string;
  properties?: Record<string, unknown>;
}

/**
 * Record what reaches the SDK's `logger` (what a worker ships to the
 * dashboard), by installing a task logger where the worker installs its own.
 * Call the returned function to stop.
 */
export function recordSdkLogs(): { lines: LogLine[]; stop(): void } {
  const lines: LogLine[] = [];
  const record = (level: LogLine["level"]) => (message: string, properties?: Record<string, unknown>) => void lines.push({ level, message, properties });
  const span = { setAttribute() {}, setAttributes() {}, end() {}, recordException() {}, setStatus() {}, addEvent() {} };
  logger.disable();
  logger.setGlobalTaskLogger({
    debug: record("debug"), log: record("log"), info: record("info"), warn: record("warn"), error: record("error"),
    trace: (_name: string, fn: (span: unknown) => unknown) => fn(span),
    startSpan: () => span,
  } as never);
  return { lines, stop: () => logger.disable() };
}
