/**
 * Benchmark: the demo as a user runs it (`npm run demo`: the compiled CLI, the
 * built-in simulator over HTTP, a fresh store), each run a process of its own.
 * Prints the CLI process's own peak RSS on embedded PGlite (goal: under 300 MB)
 * and on Postgres, against `node -e 0`, and PGlite's items/s as a ratio of
 * Postgres' (goal: at least 0.9x). Runs alternate between the stores so both
 * see the same machine; medians of three.
 *
 * The same PGlite run is measured a third way, started with the two settings
 * README's "Running where memory is tight" gives, which only the environment a
 * process starts with can set: glibc's `MALLOC_ARENA_MAX=1` and V8's young
 * generation (`NODE_OPTIONS=--max-semi-space-size=4`).
 *
 * Each PGlite run starts from a copy of one empty store made before the runs:
 * creating a store is a separate short-lived process (see src/store/pglite),
 * paid once per project, not per run.
 */
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freshPostgres } from "../src/testing/databases.ts";
import { fmt, ratio, row } from "./report.ts";

const ROOT = join(import.meta.dirname, "..");
const BIN = join(ROOT, "bin", "sluice.mjs");
const PEAK = join(import.meta.dirname, "peak-rss.mjs");
const DEMO = join(ROOT, "examples", "data", "tickets.csv");
const REPEATS = 3;
/** README, "Running where memory is tight": settings read only when a process starts. */
export const TIGHT_ON_MEMORY = { MALLOC_ARENA_MAX: "1", NODE_OPTIONS: "--max-semi-space-size=4" };
/** The same, as a row's note says it. */
export const TIGHT_ON_MEMORY_TEXT = Object.entries(TIGHT_ON_MEMORY).map(([k, v]) => `${k}=${v}`).join(", ");

interface Measured {
  peakRssMb: number;
  rate?: number;
  rows?: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** One process: its own peak RSS and, for a run, items/s over the run's own start and finish. */
function measure(args: string[], env: NodeJS.ProcessEnv): Measured {
  const out = spawnSync(process.execPath, ["--import", PEAK, ...args], { cwd: ROOT, env, encoding: "utf8", maxBuffer: 1 << 26 });
  if (out.status !== 0) throw new Error(`node ${args.join(" ")} exited ${out.status}: ${out.stderr.trim().split("\n").at(-1)}`);
  const { peakRssMb } = JSON.parse(out.stderr.trim().split("\n").at(-1)!) as { peakRssMb: number };
  const last = out.stdout.trim().split("\n").at(-1);
  if (!last?.startsWith("{")) return { peakRssMb };
  const summary = JSON.parse(last) as { items: { total: number }; startedAt: string; finishedAt: string };
  const seconds = (Date.parse(summary.finishedAt) - Date.parse(summary.startedAt)) / 1000;
  return { peakRssMb, rows: summary.items.total, rate: summary.items.total / seconds };
}

export async function benchFootprint(): Promise<void> {
  console.log(`\n## footprint: the demo through the CLI on a fresh store, the process's own peak RSS and items/s, median of ${REPEATS}\n`);
  const env = { ...process.env, DATABASE_URL: "", OPENAI_API_KEY: "", ANTHROPIC_API_KEY: "", SLUICE_PROVIDER: "" };
  const demo = [BIN, "run", "ticket-triage", "--input", DEMO, "--json"];
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-footprint-"));
  let n = 0;
  const pgliteRun = (extra: NodeJS.ProcessEnv) => {
    const dataDir = join(dir, `run-${n++}`, "pglite");
    cpSync(empty, dataDir, { recursive: true });
    return measure(demo, { ...env, ...extra, SLUICE_DATA_DIR: dataDir });
  };
  const postgresRun = async (extra: NodeJS.ProcessEnv) => {
    const fresh = await freshPostgres(process.env.DATABASE_URL!);
    try {
      return measure(demo, { ...env, ...extra, DATABASE_URL: fresh.url });
    } finally {
      await fresh.drop();
    }
  };
  const empty = join(dir, "empty", "pglite");
  try {
    measure([BIN, "status"], { ...env, SLUICE_DATA_DIR: empty });
    // Memory: `npm run demo` as it is, the simulator over HTTP in the same process.
    const node: Measured[] = [];
    const pglite: Measured[] = [];
    const pgliteTight: Measured[] = [];
    const postgres: Measured[] = [];
    // Speed: the in-process provider, so the stores' work is what is timed, not the simulator's latency.
    const pgliteFast: Measured[] = [];
    const postgresFast: Measured[] = [];
    const inprocess = { SLUICE_PROVIDER: "inprocess" };
    for (let i = 0; i < REPEATS; i++) {
      node.push(measure(["-e", "0"], env));
      pglite.push(pgliteRun({}));
      pgliteTight.push(pgliteRun(TIGHT_ON_MEMORY));
      pgliteFast.push(pgliteRun(inprocess));
      if (process.env.DATABASE_URL) {
        postgres.push(await postgresRun({}));
        postgresFast.push(await postgresRun(inprocess));
      }
    }
    const runs = (ms: Measured[], f: (m: Measured) => number) => ms.map((m) => fmt(f(m))).join(", ");
    const base = median(node.map((m) => m.peakRssMb));
    const rss = median(pglite.map((m) => m.peakRssMb));
    row("node -e 0 (baseline)", `${fmt(base)} MB`, "peak RSS");
    row(`npm run demo on PGlite (on disk)`, `${fmt(rss)} MB`, `${ratio(rss, base)} of node -e 0; ${ratio(rss, 300)} of the 300 MB goal (runs: ${runs(pglite, (m) => m.peakRssMb)})`);
    const tightRss = median(pgliteTight.map((m) => m.peakRssMb));
    const [rate, tightRate] = [pglite, pgliteTight].map((ms) => median(ms.map((m) => m.rate!)));
    row(
      "  the same, set up for tight memory (README)",
      `${fmt(tightRss)} MB`,
      `${ratio(tightRss, rss)} of as it is; ${ratio(tightRss, 300)} of the 300 MB goal; ${fmt(tightRate!)} items/s against ${fmt(rate!)} (${TIGHT_ON_MEMORY_TEXT}; runs: ${runs(pgliteTight, (m) => m.peakRssMb)})`,
    );
    const fastRss = median(pgliteFast.map((m) => m.peakRssMb));
    row(`  the same, in-process provider`, `${fmt(fastRss)} MB`, `${ratio(fastRss, base)} of node -e 0 (runs: ${runs(pgliteFast, (m) => m.peakRssMb)})`);
    const pgliteRate = median(pgliteFast.map((m) => m.rate!));
    if (postgres.length) {
      const pgRss = median(postgres.map((m) => m.peakRssMb));
      row("npm run demo on Postgres", `${fmt(pgRss)} MB`, `${ratio(pgRss, base)} of node -e 0 (runs: ${runs(postgres, (m) => m.peakRssMb)})`);
      const pgRate = median(postgresFast.map((m) => m.rate!));
      row("demo on Postgres, in-process provider", `${fmt(pgRate)} items/s`, `baseline (runs: ${runs(postgresFast, (m) => m.rate!)})`);
      row("demo on PGlite, in-process provider", `${fmt(pgliteRate)} items/s`, `${ratio(pgliteRate, pgRate)} of Postgres (goal: at least 0.90x; runs: ${runs(pgliteFast, (m) => m.rate!)})`);
    } else {
      row("demo on PGlite, in-process provider", `${fmt(pgliteRate)} items/s`, `runs: ${runs(pgliteFast, (m) => m.rate!)}`);
      row("demo on Postgres", "skipped", "DATABASE_URL is not set");
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
