/**
 * Benchmark: kill -9 at random moments, then resume. The demo pipeline through
 * the CLI, as a user runs it, with the providers' simulator over HTTP (with
 * latency, and provider batches that take a while). Each store (embedded
 * PGlite, then Postgres when DATABASE_URL is set) runs the demo once without
 * interruption (the baseline), then again killed with SIGKILL at ten points,
 * in every stage (loading, filter, classify, a provider batch in flight, its
 * collection, validate, commit) and at random times, resumed after each.
 *
 * Printed beside the baseline: items lost, whether the final target rows are
 * identical (a hash), calls billed, and the calls billed twice against the
 * calls in flight at the kills: sent by a killed process and never come back,
 * as the resumed run counts them from the dead process's journal. Those are
 * the only calls a resumed run may pay for again. The simulator's own count
 * of answers cut off (answered after their client had gone, or never read)
 * is printed beside it: it misses an answer written just as the client's
 * connection closed, which the client never read.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../src/store/index.ts";
import { targetRows } from "../src/store/reports.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { freshPostgres } from "../src/testing/databases.ts";
import { fmt, ratio, row } from "./report.ts";

const ROOT = join(import.meta.dirname, "..");
const BIN = join(ROOT, "bin", "sluice.mjs");
const DEMO = join(ROOT, "examples", "data", "tickets.csv");

interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run `sluice <args>`; with `killAt`, SIGKILL it when its stderr matches, or after `killAfterMs`. */
function sluice(args: string[], env: NodeJS.ProcessEnv, kill?: { at?: RegExp; afterMs?: number }): Promise<CliRun> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  const stop = () => child.kill("SIGKILL");
  const timer = kill?.afterMs !== undefined ? setTimeout(stop, kill.afterMs) : undefined;
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => {
    stderr += d;
    if (kill?.at?.test(stderr)) stop();
  });
  return new Promise((resolve) =>
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
}

const lastJson = (out: string) => JSON.parse(out.trim().split("\n").at(-1)!);

/** Where to kill: every stage of the demo, a batch in flight and its collection, and random moments. */
function killPoints(): { at?: RegExp; afterMs?: number; label: string }[] {
  const random = () => 300 + Math.floor(Math.random() * 2_500);
  return [
    { label: "loading", at: /started run/ },
    { label: "filter", at: /stage filter: [1-9]\d{2,}\// },
    { label: "classify", at: /stage classify: [1-9]\d{2,}\// },
    { label: "classify, later", at: /stage classify: [2-9]\d{3}\// },
    { label: "random", afterMs: random() },
    { label: "extract batch in flight", at: /submitted openai batch/ },
    { label: "extract batch collected", at: /stage extract: [1-9]\d{2,}\// },
    { label: "validate", at: /stage validate: [1-9]\d*\// },
    { label: "commit", at: /stage commit: [1-9]\d*\// },
    { label: "random", afterMs: random() },
  ];
}

interface Outcome {
  items: Record<string, number>;
  targetHash: string;
  billed: number;
  batchBilled: number;
  paidTwice: number;
  cutOff: number;
  /** Calls the killed processes had sent that never came back, as the resumed runs report from their journals. */
  inFlight: number;
  kills: string[];
  /** Requests paid for more often than the kills cut them off. */
  extra: string[];
}

async function targetHash(env: NodeJS.ProcessEnv): Promise<string> {
  const db = await openDatabase({ url: env.DATABASE_URL || undefined, dataDir: env.SLUICE_DATA_DIR || undefined });
  try {
    const rows = await targetRows(db, "ticket_triage");
    rows.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return createHash("sha256").update(JSON.stringify(rows)).digest("hex").slice(0, 16);
  } finally {
    await db.close();
  }
}

async function runDemo(sim: Simulator, env: NodeJS.ProcessEnv, chaos: boolean): Promise<Outcome> {
  sim.reset();
  const kills: string[] = [];
  // For each request, the step that paid for it again: "<n>. <kill point>".
  const againIn = new Map<string, string>();
  // What each run said last on stderr before it ended (or was killed), for a request paid again.
  const lastWords: string[] = [];
  let runId: string | undefined;
  let final: CliRun | undefined;
  let inFlight = 0;
  for (const [i, point] of (chaos ? killPoints() : []).entries()) {
    const run = await sluice(runId ? ["resume", runId, "--json"] : ["run", "ticket-triage", "--input", DEMO, "--json"], env, point);
    lastWords.push(run.stderr.trim().split("\n").filter((l) => !/^stage \S+: \d/.test(l)).slice(-3).join(" | "));
    inFlight += inFlightReported(run.stderr);
    for (const [h, n] of Object.entries(sim.stats().billedByRequestHash)) {
      if (n > 1 && !againIn.has(h)) againIn.set(h, `run ${i + 1}, killed at ${point.label}; the run before said: ${lastWords[i - 1] ?? "-"}; this run said: ${lastWords[i]}`);
    }
    runId ??= /run (run_[a-z0-9]+)/.exec(run.stderr)?.[1];
    if (run.signal === "SIGKILL") kills.push(point.label);
    else if (run.code === 0) final = run;
    else throw new Error(`sluice exited ${run.code}: ${run.stderr.trim().split("\n").at(-1)}`);
  }
  if (!final) {
    final = await sluice(runId ? ["resume", runId, "--json"] : ["run", "ticket-triage", "--input", DEMO, "--json"], env);
    inFlight += inFlightReported(final.stderr);
  }
  if (final.code !== 0) throw new Error(`sluice exited ${final.code}: ${final.stderr.trim().split("\n").at(-1)}`);
  const summary = lastJson(final.stdout);
  const stats = sim.stats();
  return {
    items: summary.items.byStatus,
    targetHash: await targetHash(env),
    billed: stats.billed,
    batchBilled: stats.batchCalls,
    paidTwice: Object.values(stats.billedByRequestHash).reduce((sum, n) => sum + Math.max(0, n - 1), 0),
    cutOff: stats.cutOff,
    inFlight,
    kills,
    extra: Object.entries(stats.billedByRequestHash).filter(([h, n]) => n - 1 > (stats.cutOffByRequestHash[h] ?? 0)).map(([h, n]) => `${h.slice(0, 8)}x${n} (${(stats.billedAgainHow[h] ?? []).join(" + ")}; paid again in ${againIn.get(h) ?? "the final resume"})`),
  };
}

/** The calls in flight when a stopped process died, as a resumed run reports them from its journal. */
function inFlightReported(stderr: string): number {
  let calls = 0;
  for (const m of stderr.matchAll(/stopped with (\d+) call\(s\) in flight/g)) calls += Number(m[1]);
  return calls;
}

function sameCounts(a: Record<string, number>, b: Record<string, number>): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].every((k) => (a[k] ?? 0) === (b[k] ?? 0));
}

function lost(reference: Record<string, number>, got: Record<string, number>): number {
  const total = (m: Record<string, number>) => Object.values(m).reduce((a, b) => a + b, 0);
  const open = (got.queued ?? 0) + (got.processing ?? 0) + (got.failed_retryable ?? 0);
  return Math.max(0, total(reference) - total(got)) + open;
}

export async function benchChaos(): Promise<void> {
  console.log("\n## 5. chaos: kill -9 at ten moments, then resume (demo data, CLI, simulator over HTTP)\n");
  // Latency keeps calls in flight at every kill; batches take a while, so one is in flight at a kill.
  const sim = await startSimulator({ port: 0, config: { latency: { meanMs: 8, jitterMs: 4 }, batch: { processingMs: 1_500 } } });
  const base = { OPENAI_API_KEY: "sk-bench-chaos", ANTHROPIC_API_KEY: "sk-ant-bench-chaos", OPENAI_BASE_URL: sim.openaiBaseURL, ANTHROPIC_BASE_URL: sim.anthropicBaseURL, SLUICE_PROGRESS_MS: "50", SLUICE_BATCH_POLL_MS: "200", FORCE_COLOR: "0" };
  try {
    const stores: { name: string; env: () => Promise<{ env: NodeJS.ProcessEnv; drop: () => Promise<void> }> }[] = [
      { name: "PGlite", env: async () => ({ env: { ...process.env, ...base, DATABASE_URL: "", SLUICE_DATA_DIR: join(mkdtempSync(join(tmpdir(), "sluice-chaos-")), "pglite") }, drop: async () => {} }) },
    ];
    if (process.env.DATABASE_URL) {
      stores.push({
        name: "Postgres",
        env: async () => {
          const pg = await freshPostgres(process.env.DATABASE_URL!);
          await pg.db.close();
          return { env: { ...process.env, ...base, DATABASE_URL: pg.url!, SLUICE_JOURNAL_DIR: mkdtempSync(join(tmpdir(), "sluice-chaos-journal-")) }, drop: pg.drop };
        },
      });
    } else {
      row("Postgres", "skipped", "DATABASE_URL not set");
    }
    for (const store of stores) {
      const refStore = await store.env();
      const reference = await runDemo(sim, refStore.env, false);
      await refStore.drop();
      const chaosStore = await store.env();
      const chaos = await runDemo(sim, chaosStore.env, true);
      await chaosStore.drop();
      row(`${store.name}: uninterrupted run`, `${fmt(reference.billed)} calls`, `baseline · target ${reference.targetHash} · ${fmt(reference.batchBilled)} by batch`);
      row(`${store.name}: ${chaos.kills.length} kills, then resume`, `${fmt(chaos.billed)} calls`, `${ratio(chaos.billed, reference.billed)} of baseline · target ${chaos.targetHash} (${chaos.targetHash === reference.targetHash ? "identical" : "DIFFERENT"}) · ${fmt(chaos.batchBilled)} by batch`);
      const same = sameCounts(chaos.items, reference.items);
      row("", `${fmt(lost(reference.items, chaos.items))} items lost`, `final states ${same ? "as uninterrupted" : `DIFFER: ${JSON.stringify(chaos.items)}`}`);
      row(
        "",
        `${fmt(chaos.paidTwice)} paid twice`,
        `${chaos.inFlight ? ratio(chaos.paidTwice, chaos.inFlight) : "n/a"} of the ${fmt(chaos.inFlight)} calls in flight at the kills, as the resumed runs counted them from the journals (target <= 1.00x; uninterrupted: ${fmt(reference.paidTwice)}); the simulator saw ${fmt(chaos.cutOff)} answers cut off`,
      );
      row("", "killed at", chaos.kills.join(", "));
      if (chaos.extra.length) row("", "paid again, not seen cut off by the simulator", chaos.extra.join(", "));
    }
  } finally {
    await sim.close();
  }
}
