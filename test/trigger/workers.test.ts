import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { parse } from "csv-parse/sync";
import { configure } from "@trigger.dev/sdk";
import { resourceCatalog } from "@trigger.dev/core/v3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import ticketTriage from "../../pipelines/ticket-triage.ts";
import { runPipeline } from "../../src/runners/local/index.ts";
import { defineSluiceTasks, submitRun, type OrchestratorOutput } from "../../src/runners/trigger/index.ts";
import { createInProcessProvider, freshPostgres, memoryDatabase, singleProvider, type TestDatabase } from "../../src/testing/index.ts";
import { commitTable, targetRows, tempDir, workStatuses } from "./data.ts";
import { startFakeTriggerApi, type FakeTriggerApi } from "./fake-api.ts";
import { installTaskCatalog } from "./harness.ts";

/**
 * The demo pipeline through the fake Trigger.dev API in worker mode: four
 * worker processes take runs over HTTP, within the tasks' concurrency limits,
 * while a local runner works the same tickets. The worker that takes the
 * second chunk of `classify` is killed (SIGKILL) while running it; its
 * attempt is retried on another worker. The committed rows must be the local
 * runner's.
 */

const url = process.env.DATABASE_URL;
const WORKERS = 4;
const TICKETS = 200;

installTaskCatalog();
defineSluiceTasks([ticketTriage]);
const manifest = (taskId: string) => resourceCatalog.getTaskManifest(taskId) as { concurrency?: { limits?: string[] }; retry?: { maxAttempts?: number } } | undefined;
const totals = new Map(resourceCatalog.listConcurrencyLimitManifests().map((l) => [l.name, l.total ?? Infinity] as const));

describe.skipIf(!url)("the demo through four Trigger.dev workers, one of them killed", () => {
  let remote: TestDatabase;
  let local: TestDatabase;
  let fake: FakeTriggerApi;
  const workers: { id: string; proc: ChildProcess; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>; stderr: string[] }[] = [];
  const dir = tempDir();

  beforeAll(async () => {
    [remote, local] = await Promise.all([freshPostgres(url!), memoryDatabase()]);
    fake = await startFakeTriggerApi({
      limitsOf: (taskId) => manifest(taskId)?.concurrency?.limits ?? [],
      limitTotal: (limit) => totals.get(limit),
      maxAttempts: (taskId) => manifest(taskId)?.retry?.maxAttempts ?? 1,
    });
    configure({ secretKey: "tr_dev_sluice_test", baseURL: fake.url, requestOptions: { retry: { maxAttempts: 1 } } });
  });
  afterAll(async () => {
    for (const w of workers) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill("SIGTERM");
    await Promise.all(workers.map((w) => w.exit));
    await fake?.close();
    await Promise.all([remote?.drop(), local?.drop()]);
    dir.remove();
  });

  test("commits exactly the rows the local runner commits", { timeout: 600_000 }, async () => {
    const rows = parse(readFileSync("examples/data/tickets.csv", "utf8"), { to: TICKETS + 1, raw: true }) as unknown as { raw: string }[];
    const input = dir.file("tickets.csv", rows.map((r) => r.raw.replace(/\n$/, "")));
    const reference = runPipeline({ db: local.db, pipeline: ticketTriage, providers: singleProvider(createInProcessProvider()) }, input, { fresh: true });
    reference.catch(() => {});

    for (let i = 1; i <= WORKERS; i++) {
      const id = `w${i}`;
      const proc = spawn(process.execPath, ["--import", "tsx", "test/trigger/worker.ts"], {
        env: { ...process.env, FAKE_URL: fake.url, DATABASE_URL: remote.url, WORKER_ID: id, CHUNK_SIZE: "20", DIE_ON: "sluice-ticket-triage--classify:1", DIE_AFTER_MS: "30" },
        stdio: ["ignore", "ignore", "pipe"],
      });
      const stderr: string[] = [];
      proc.stderr!.on("data", (c: Buffer) => stderr.push(c.toString()));
      workers.push({ id, proc, stderr, exit: new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal }))) });
    }

    const submitted = await submitRun({ db: remote.db, pipeline: ticketTriage, inputPath: input });
    const orchestrator = fake.runs.get(submitted.triggerRunId)!;
    while (!["COMPLETED", "FAILED", "CANCELED"].includes(orchestrator.status)) await new Promise((r) => setTimeout(r, 200));
    expect(orchestrator.error?.message, workers.map((w) => w.stderr.join("")).join("\n")).toBeUndefined();
    const output = orchestrator.output as OrchestratorOutput;
    expect(output.summary.status).toBe("finished");

    // One worker was killed, running the first attempt of classify's second chunk; another ran its retry.
    const killed = workers.filter((w) => w.proc.signalCode === "SIGKILL");
    expect(killed.map((w) => w.id)).toHaveLength(1);
    const stageRuns = [...fake.runs.values()].filter((r) => r.taskId.startsWith("sluice-ticket-triage--"));
    const victim = stageRuns.find((r) => r.workers?.[0] === killed[0]!.id && r.taskId === "sluice-ticket-triage--classify")!;
    expect(victim.attempts).toBe(2);
    expect(victim.workers![1]).not.toBe(killed[0]!.id);
    expect(victim.status).toBe("COMPLETED");
    // Runs went to several workers, and no named limit ever held more runs than it allows.
    expect(new Set(stageRuns.flatMap((r) => r.workers ?? [])).size).toBeGreaterThanOrEqual(2);
    for (const [limit, total] of totals) expect(fake.peakHeld(limit)).toBeLessThanOrEqual(total);

    const ref = await reference;
    expect(output.summary.items).toEqual(ref.items);
    expect(await targetRows(remote.db, commitTable(ticketTriage))).toEqual(await targetRows(local.db, commitTable(ticketTriage)));
    expect(Object.values(await workStatuses(remote.db, submitted.runId))).toEqual(Object.values(await workStatuses(local.db, ref.runId)));
    console.log(JSON.stringify({
      tickets: TICKETS, stageRuns: stageRuns.length, byWorker: Object.fromEntries(workers.map((w) => [w.id, stageRuns.filter((r) => r.workers?.includes(w.id)).length])),
      peak: Object.fromEntries([...totals.keys()].map((l) => [l, fake.peakHeld(l)])), committed: ref.items.byStatus.committed,
      providerCalls: { trigger: output.summary.stages.reduce((n, s) => n + s.providerCalls, 0), local: ref.stages.reduce((n, s) => n + s.providerCalls, 0) },
    }));
  });
});
