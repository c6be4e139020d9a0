import { configure, metadata } from "@trigger.dev/sdk";
import { logger, resourceCatalog, stringifyIO } from "@trigger.dev/core/v3";
import { runInMockTaskContext } from "@trigger.dev/core/v3/test";
import { StandardResourceCatalog, type RuntimeManager } from "@trigger.dev/core/v3/workers";
import { startFakeTriggerApi, SUSPENDED, type FakeRun, type FakeTriggerApi } from "./fake-api.ts";

/**
 * Runs Trigger.dev tasks in this process the way a worker would: task
 * functions come from the SDK's own task catalog (what `task()` registered),
 * orchestrators run inside a mock task context whose runtime manager makes
 * `batchTriggerAndWait` wait for the fake API to execute the batch, and every
 * trigger goes over HTTP to the loopback fake.
 *
 * A stage run that waits (`wait.for`) is suspended: the invocation is left
 * where it is, never to go on (its process is gone), its abort signal fires,
 * and the fake executes the run again as a fresh invocation of the same
 * attempt. A stage run executed while an orchestrator waits on its batch runs
 * under its own task context (its run id), as on a worker of its own.
 */

/** The SDK's registry of process globals (task context, runtime, metadata). */
const SDK_GLOBALS = Symbol.for("dev.trigger.ts.api");

interface Invocation {
  runId: string;
  suspend(): void;
}

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
  /** Called when a run is suspended at a wait, before the fake resumes it (what holds which slot, what the provider has). */
  onSuspend?: (run: FakeRun) => void | Promise<void>;
  /** A suspended run that cannot be restored (its machine is gone): the attempt fails and the task's retry takes over. */
  failResume?: (run: FakeRun) => boolean;
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

/** Orchestrators and schedules: tasks that wait on other runs, run in a task context of their own. */
const needsContext = (taskId: string) => !taskId.includes("--") || taskId.endsWith("--schedule");

/** Named concurrency limits a task holds, as its manifest declares them. */
const limitsOf = (taskId: string): string[] => (resourceCatalog.getTaskManifest(taskId) as { concurrency?: { limits?: string[] } } | undefined)?.concurrency?.limits ?? [];

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

  let current: Invocation | undefined;

  const runIn = async (taskId: string, payload: unknown, runId: string, attempt: number, signal = new AbortController().signal) => {
    const task = resourceCatalog.getTask(taskId);
    if (!task) throw new Error(`no task ${taskId} in the catalog`);
    if (needsContext(taskId)) return inTaskContext((ctx) => task.fns.run(payload, { ctx, signal }), runId, attempt);
    const registry = (globalThis as Record<symbol, Record<string, any> | undefined>)[SDK_GLOBALS];
    const outer = registry?.["task-context"];
    if (!outer) return inTaskContext((ctx) => task.fns.run(payload, { ctx, signal }), runId, attempt);
    // Inside an orchestrator's wait: this run's own context, as on another worker, until it ends or is suspended.
    const ctx = { ...outer.ctx, run: { ...outer.ctx.run, id: runId }, attempt: { ...outer.ctx.attempt, number: attempt } };
    registry!["task-context"] = { ...outer, ctx };
    return task.fns.run(payload, { ctx, signal });
  };

  /** One invocation of a run: its output, or SUSPENDED when it waited (then it is left behind, aborted). */
  const invoke = async (taskId: string, payload: unknown, run: FakeRun, attempt: number, signal: AbortSignal | undefined) => {
    const controller = new AbortController();
    let suspended!: () => void;
    const suspension = new Promise<typeof SUSPENDED>((resolve) => (suspended = () => resolve(SUSPENDED)));
    const previous = current;
    const registry = (globalThis as Record<symbol, Record<string, unknown> | undefined>)[SDK_GLOBALS];
    const outer = registry?.["task-context"];
    const wasInContext = inContext;
    current = {
      runId: run.id,
      suspend() {
        controller.abort(new Error(`run ${run.id} suspended at a wait`));
        suspended();
      },
    };
    try {
      return await Promise.race([runIn(taskId, payload, run.id, attempt, signal ? AbortSignal.any([signal, controller.signal]) : controller.signal), suspension]);
    } finally {
      current = previous;
      // The orchestrator this run was executed under gets its context back; a context this run opened and left is closed.
      if (registry && outer) registry["task-context"] = outer;
      inContext = wasInContext;
    }
  };

  const executor = async (taskId: string, payload: unknown, run: FakeRun, attempt: number) => {
    const execution = { runId: run.id, taskId, attempt, payload };
    executions.push(execution);
    if (faults.cancel?.(execution)) {
      fake.cancel(run.id);
      throw new Error(`run ${run.id} was cancelled`);
    }
    if (faults.failBeforeRun?.(execution)) throw new WorkerCrash(`worker for ${taskId} attempt ${attempt} never started`);
    const output = await invoke(taskId, payload, run, attempt, faults.signal?.(execution));
    if (output === SUSPENDED) return output;
    if (faults.failAfterRun?.(execution)) throw new WorkerCrash(`worker lost after ${taskId} attempt ${attempt}`);
    return output;
  };

  const fake = await startFakeTriggerApi({
    executor: options.execute === false ? undefined : executor,
    limitsOf,
    onSuspend: (run) => faults.onSuspend?.(run),
    failResume: (run) => faults.failResume?.(run) ?? false,
    maxAttempts: (taskId) => (resourceCatalog.getTaskManifest(taskId) as { retry?: { maxAttempts?: number } } | undefined)?.retry?.maxAttempts ?? 1,
  });

  const runtimeManager: RuntimeManager = {
    disable() {},
    async waitForWaitpoint({ waitpointFriendlyId, finishDate }) {
      // wait.for: the run is checkpointed here. This process never goes on with it; a fresh invocation resumes the run.
      if (!finishDate) throw new Error(`sluice tasks wait for a duration, not for token ${waitpointFriendlyId}`);
      if (!current) throw new Error(`wait ${waitpointFriendlyId} outside any run`);
      current.suspend();
      return new Promise<never>(() => {});
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
