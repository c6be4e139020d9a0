/**
 * Benchmark 7: scale. The demo pipeline with the in-process provider over
 * generated tickets at 10k, 100k and 1M, on Postgres and on embedded PGlite
 * (on disk), each run in a child process of its own. Linear time shows as a
 * flat rate; flat memory as a peak RSS that does not grow with the input.
 * Both are printed as ratios against the 10k run of the same store.
 *
 * After the largest run of each store, the child writes a heap snapshot once
 * the run is over (its store still open, after a garbage collection; peak RSS
 * is read before, as writing a snapshot takes memory of its own), and what
 * the heap still holds is printed by kind, largest first.
 *
 * The largest PGlite run is made once more in a process started with the
 * settings of README's "Running where memory is tight" (`MALLOC_ARENA_MAX=1`,
 * a 4 MB young generation), printed against the same run as it is.
 *
 * Then the same ladder once more on one store (Postgres when DATABASE_URL is
 * set), with the providers over HTTP: the official SDKs against the
 * simulator, started in a process of its own as a real provider would be,
 * so the child's peak RSS is sluice's alone. The in-process provider never
 * exercises the SDKs, their HTTP client or the batch API, and what grows
 * with the calls there would not show above.
 *
 * 1M tickets take tens of minutes on a 2-core machine, so the ceiling
 * defaults to 100k: `npm run bench -- scale 1000000` (or
 * `SLUICE_SCALE_MAX=1000000`) runs the full ladder.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { summarizeHeap } from "./heap-summary.ts";
import { TIGHT_ON_MEMORY, TIGHT_ON_MEMORY_TEXT } from "./footprint.ts";
import { fmt, ratio, row } from "./report.ts";

const LADDER = [10_000, 100_000, 1_000_000];
const DEFAULT_MAX = 100_000;

interface Measured {
  rows: number;
  seconds: number;
  rssMb: number;
  heapMb: number;
}

function ceiling(): number {
  const given = process.argv[3] ?? process.env.SLUICE_SCALE_MAX;
  if (given === undefined) return DEFAULT_MAX;
  const n = Number(given.replace(/[_,]/g, ""));
  if (!Number.isInteger(n) || n < LADDER[0]!) throw new Error(`scale: the ceiling must be a whole number of tickets, at least ${fmt(LADDER[0]!)} (got "${given}")`);
  return n;
}

/** Tickets written by the demo data generator, in a process of its own (1M tickets take a few GB while generated). */
function generate(dir: string, count: number): string {
  const out = join(dir, String(count));
  execFileSync(process.execPath, ["--import", "tsx", join(import.meta.dirname, "..", "scripts", "generate-tickets.ts"), "--count", String(count), "--out", out], { stdio: "ignore" });
  return join(out, "tickets.csv");
}

function measure(store: "pglite" | "postgres", input: string, snapshot?: string, simUrl?: string, env: NodeJS.ProcessEnv = {}): Measured {
  const out = execFileSync(process.execPath, ["--expose-gc", "--import", "tsx", join(import.meta.dirname, "scale-child.ts"), store, input, ...(snapshot ? [snapshot] : [])], {
    encoding: "utf8",
    maxBuffer: 1 << 20,
    env: { ...process.env, SLUICE_SCALE_SIM_URL: simUrl ?? "", ...env },
  });
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

/** `sluice sim` on a free port, in a process of its own, for as long as `fn` runs. */
async function withSimulator<T>(fn: (url: string) => T): Promise<T> {
  const child = spawn(process.execPath, [join(import.meta.dirname, "..", "bin", "sluice.mjs"), "sim", "--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let seen = "";
      child.stdout!.on("data", (chunk: Buffer) => {
        seen += chunk.toString();
        const m = /listening on (http:\/\/\S+)/.exec(seen);
        if (m) resolve(m[1]!);
      });
      child.once("exit", (code) => reject(new Error(`sluice sim exited ${code} before listening`)));
    });
    return fn(url);
  } finally {
    child.kill("SIGTERM");
  }
}

type Input = { n: number; path: string };

/** One store through the ladder: items/s and peak RSS against its 10k run; a heap snapshot after the largest. Returns the largest run. */
function ladder(name: string, store: "pglite" | "postgres", inputs: Input[], dir: string, simUrl?: string): Measured {
  let base: Measured | undefined;
  let last: Measured | undefined;
  for (const { n, path } of inputs) {
    // After a run over HTTP, Node 20's heap snapshot writer crashes the process (SIGSEGV): that ladder takes none.
    const snapshot = n === inputs.at(-1)!.n && !simUrl ? join(dir, `${store}-${n}.heapsnapshot`) : undefined;
    const m = (last = measure(store, path, snapshot, simUrl));
    const rate = m.rows / m.seconds;
    const detail = `${fmt(m.rows)} rows in ${m.seconds.toFixed(1)} s; heap after the run ${fmt(m.heapMb)} MB`;
    if (!base) {
      base = m;
      row(`${name}, ${fmt(n)} tickets`, `${fmt(rate)} items/s`, `baseline (${detail})`);
      row(`  peak RSS`, `${fmt(m.rssMb)} MB`, "baseline");
    } else {
      row(`${name}, ${fmt(n)} tickets`, `${fmt(rate)} items/s`, `${ratio(rate, base.rows / base.seconds)} of the 10k rate (${detail})`);
      row(`  peak RSS`, `${fmt(m.rssMb)} MB`, `${ratio(m.rssMb, base.rssMb)} of the 10k peak`);
    }
    if (snapshot) {
      const heap = summarizeHeap(snapshot);
      row(`  heap left after ${fmt(n)}`, `${heap.totalMb.toFixed(1)} MB`, `largest: ${heap.shares.map((s) => `${s.kind} ${s.mb.toFixed(1)} MB (${fmt(s.count)})`).join(", ")}`);
      rmSync(snapshot, { force: true });
    }
  }
  return last!;
}

/** The largest PGlite run again, its process started with README's settings for tight memory, against the same run as it is. */
function tightLadderTop(input: Input, asItIs: Measured): void {
  const m = measure("pglite", input.path, undefined, undefined, TIGHT_ON_MEMORY);
  const rate = m.rows / m.seconds;
  row(`PGlite, ${fmt(input.n)}, set up for tight memory`, `${fmt(rate)} items/s`, `${ratio(rate, asItIs.rows / asItIs.seconds)} of the same run as it is (${TIGHT_ON_MEMORY_TEXT}; ${m.seconds.toFixed(1)} s)`);
  row(`  peak RSS`, `${fmt(m.rssMb)} MB`, `${ratio(m.rssMb, asItIs.rssMb)} of the same run as it is; ${ratio(m.rssMb, 400)} of the goal for 1M tickets, 400 MB`);
}

export async function benchScale(): Promise<void> {
  const max = ceiling();
  const sizes = LADDER.filter((n) => n <= max);
  console.log(`\n## 7. scale: the demo at ${sizes.map(fmt).join(", ")} tickets (in-process provider, then over HTTP; child process each; ceiling ${fmt(max)})\n`);
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-scale-"));
  try {
    const inputs = sizes.map((n) => ({ n, path: generate(dir, n) }));
    const stores = process.env.DATABASE_URL ? (["postgres", "pglite"] as const) : (["pglite"] as const);
    if (!process.env.DATABASE_URL) row("sluice on Postgres", "skipped", "DATABASE_URL not set");
    for (const store of stores) {
      const largest = ladder(store === "pglite" ? "PGlite (on disk)" : "Postgres", store, inputs, dir);
      if (store === "pglite") tightLadderTop(inputs.at(-1)!, largest);
    }
    const http = stores[0];
    await withSimulator((url) => ladder(`${http === "pglite" ? "PGlite" : "Postgres"}, providers over HTTP`, http, inputs, dir, url));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
