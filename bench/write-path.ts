/**
 * Benchmark: the write statement (`store/results.ts` `writeResults`), the
 * store's largest cost in a run. 250-row chunks shaped like the demo's model
 * stages (an output, one attempt and one request-cache entry per item), in
 * the two ways a chunk is written: a later stage of a segment inserts its
 * work rows, the first stage updates the rows it claimed. The statement
 * against the one before it (`store/results-before.ts`), in the same run,
 * taking turns chunk by chunk, on PGlite on disk (what `sluice run` uses)
 * and on Postgres. CPU time (this process, which runs PGlite, plus the
 * Postgres server's processes) is the figure: on a shared machine wall time
 * mostly measures the neighbours; it is printed too.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { insertItems } from "../src/store/runs.ts";
import { analyzeQueue } from "../src/store/work.ts";
import { serverProcessIds } from "../src/store/server.ts";
import { writeResults, type ResultToWrite, type ResultsTarget, type WriteMode, type WriteOutcome } from "../src/store/results.ts";
import { writeResultsBefore } from "../src/store/results-before.ts";
import { openDatabase, type Database } from "../src/store/index.ts";
import { freshPostgres } from "../src/testing/databases.ts";
import { ratio, row } from "./report.ts";

const CHUNK = 250;
const CHUNKS_PER_ROUND = 6;
const ROUNDS = 5;

const hex = (n: number, salt: string) => {
  let h = 0x811c9dc5 ^ n;
  let out = "";
  while (out.length < 32) {
    h = Math.imul(h ^ salt.charCodeAt(out.length % salt.length), 16777619) >>> 0;
    out += h.toString(16).padStart(8, "0");
  }
  return out.slice(0, 32);
};

/** A result like the demo's `extract` stage: a 170-character output, one paid call, its answer cached. */
function result(itemId: string, n: number): ResultToWrite {
  const value = { amount: n % 7 ? null : n % 500, product: null, summary: `Category: billing Subject: Overpaid after downgrade Hi support, ticket ${n}`, order_id: n % 3 ? null : `ORD-${n}`, severity: ["low", "medium", "critical"][n % 3] };
  const requestHash = hex(n, "req");
  return {
    itemId,
    status: "succeeded_unvalidated",
    inputHash: hex(n, "in"),
    reused: false,
    output: { value, status: "succeeded_unvalidated", costUsd: 0.000021 + n * 1e-9, hash: hex(n, "out") },
    attempts: [{ attempt: 1, provider: "openai", model: "gpt-4o-mini", mode: "realtime", requestHash, inputTokens: 140 + (n % 40), outputTokens: 11 + (n % 9), cachedTokens: 0, costUsd: 0.000021, listCostUsd: 0.000021, latencyMs: 40 + (n % 50) }],
    cache: { requestHash, provider: "openai", model: "gpt-4o-mini", response: { text: JSON.stringify(value), model: "gpt-4o-mini", usage: { inputTokens: 142, outputTokens: 11 }, finishReason: "stop" } },
  };
}

type Variant = (db: Database, to: ResultsTarget, chunk: ResultToWrite[]) => Promise<WriteOutcome>;
const VARIANTS: Record<string, Variant> = {
  before: writeResultsBefore,
  now: writeResults,
};

/** Milliseconds per chunk written, for each variant and mode: the median of the rounds. */
async function measure(db: Database): Promise<Map<string, number>> {
  const times = new Map<string, number[]>();
  let next = 0;
  const names = Object.keys(VARIANTS);
  for (let round = -1; round < ROUNDS; round++) {
    for (const mode of ["insert", "unguarded"] as WriteMode[]) {
      const spent = new Map<string, number>();
      const chunks = Array.from({ length: CHUNKS_PER_ROUND }, () => new Map(names.map((name) => [name, Array.from({ length: CHUNK }, () => next++).map((n) => result(`T-${String(n).padStart(7, "0")}`, n))])));
      if (mode === "unguarded") {
        // The first stage's rows are queued before they are written, and the queue analyzed, as the engine does (`drive/queue.ts`).
        for (const byName of chunks) for (const [name, chunk] of byName) await insertItems(db, `bench-${name}-${mode}`, { index: 0, id: "extract" }, chunk.map((r, line) => ({ item_id: r.itemId, line, content_hash: hex(line, "c"), data: { id: r.itemId } })));
        await analyzeQueue(db, { items: true });
      }
      for (let c = 0; c < CHUNKS_PER_ROUND; c++) {
        // The variants take turns chunk by chunk, each first in turn, so none always meets the warmer cache or the quieter moment.
        const order = names.map((_, k) => names[(k + c + round + 1) % names.length]!);
        for (const name of order) {
          const runId = `bench-${name}-${mode}`;
          const to: ResultsTarget = { pipeline: "bench", runId, stage: { index: mode === "insert" ? 1 : 0, id: "extract", version: "v1a2b3c4d5e6" }, workerId: "w", mode, retryDelays: [1] };
          const chunk = chunks[c]!.get(name)!;
          const server = await serverProcessIds(db);
          const cpu0 = cpuMs(server);
          const started = performance.now();
          const outcome = await VARIANTS[name]!(db, to, chunk);
          const wall = performance.now() - started;
          const cpu = cpuMs(server) - cpu0;
          spent.set(`${name} wall`, (spent.get(`${name} wall`) ?? 0) + wall);
          spent.set(`${name} cpu`, (spent.get(`${name} cpu`) ?? 0) + cpu);
          if (outcome.dropped.length) throw new Error(`${name} ${mode}: ${outcome.dropped.length} rows not written`);
        }
      }
      if (round >= 0) for (const [key, ms] of spent) times.set(`${key} ${mode}`, [...(times.get(`${key} ${mode}`) ?? []), ms / CHUNKS_PER_ROUND]);
    }
  }
  return new Map([...times].map(([k, v]) => [k, median(v)]));
}

export async function benchWritePath(): Promise<void> {
  console.log(`\n## write path: one ${CHUNK}-row write (output, attempt, cache entry, work row per item), median of ${ROUNDS} rounds of ${CHUNKS_PER_ROUND}\n`);
  for (const store of ["pglite", "postgres"] as const) {
    if (store === "postgres" && !process.env.DATABASE_URL) {
      row("Postgres", "skipped", "DATABASE_URL not set");
      continue;
    }
    const dir = store === "pglite" ? mkdtempSync(join(tmpdir(), "sluice-bench-write-")) : undefined;
    const t = dir ? await onDisk(dir) : await freshPostgres(process.env.DATABASE_URL!);
    try {
      const ms = await measure(t.db);
      const name = store === "pglite" ? "PGlite (on disk)" : "Postgres";
      for (const mode of ["insert", "unguarded"]) {
        const what = mode === "insert" ? "inserting" : "updating";
        for (const v of Object.keys(VARIANTS)) {
          const [wall, cpu] = [ms.get(`${v} wall ${mode}`)!, ms.get(`${v} cpu ${mode}`)!];
          const [wall0, cpu0] = [ms.get(`before wall ${mode}`)!, ms.get(`before cpu ${mode}`)!];
          const note = v === "before" ? "baseline" : `${ratio(cpu, cpu0)} of the CPU time, ${ratio(wall, wall0)} of the wall time`;
          row(`${name}, ${what}, ${v}`, `${cpu.toFixed(1)} ms CPU`, `${wall.toFixed(1)} ms wall; ${note}`);
        }
      }
    } finally {
      await t.drop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }
}

/**
 * CPU time spent so far by this process (which runs PGlite) and by the
 * Postgres server processes given, in milliseconds (`/proc/<pid>/schedstat`:
 * nanoseconds on a CPU).
 */
function cpuMs(serverPids: readonly number[]): number {
  const own = process.cpuUsage();
  let ms = (own.user + own.system) / 1000;
  for (const pid of serverPids) {
    try {
      ms += Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[0]) / 1e6;
    } catch {
      // A connection that ended meanwhile; what it spent is lost to both sides of the difference.
    }
  }
  return ms;
}

async function onDisk(dir: string): Promise<{ db: Database; drop(): Promise<void> }> {
  const db = await openDatabase({ dataDir: join(dir, "pglite") });
  return { db, drop: () => db.close() };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
