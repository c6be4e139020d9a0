/**
 * Benchmark: how long the CLI takes before it does anything, as a user feels it.
 * Whole-process wall time of `sluice --help` against `node -e 0`, and of
 * `sluice status` on a store holding 100 runs (on-disk PGlite, as `sluice run`
 * makes it; and Postgres when DATABASE_URL is set). Medians of several runs,
 * each process started cold the way a shell starts it.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { definePipeline, defineStage } from "../src/core/define.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import type { Database } from "../src/store/database.ts";
import { openDatabase } from "../src/store/index.ts";
import { freshPostgres } from "../src/testing/databases.ts";
import { ratio, row } from "./report.ts";

const ROOT = join(import.meta.dirname, "..");
const BIN = join(ROOT, "bin", "sluice.mjs");
const REPEATS = 7;
const RUNS = 100;

/** Each of the 100 runs: three items through a filter and a commit, no model. */
const tiny = definePipeline({
  id: "bench-status",
  source: { key: "id", schema: { type: "object", required: ["id"], properties: { id: { type: "string" } } } },
  stages: [
    defineStage({ id: "filter", kind: "filter", codeVersion: "1", run: () => ({ keep: true }) }),
    defineStage({ id: "commit", kind: "commit", target: { table: "bench_status_out", key: "id" }, row: ({ itemId }) => ({ id: itemId }) }),
  ],
});

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Wall seconds of one whole process, start to exit; throws when it fails. */
function wall(args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const started = performance.now();
  const out = spawnSync(process.execPath, args, { cwd: ROOT, env, encoding: "utf8" });
  const seconds = (performance.now() - started) / 1000;
  if (out.status !== 0) throw new Error(`node ${args.join(" ")} exited ${out.status}: ${out.stderr.split("\n")[0]}`);
  return seconds;
}

/** Medians of the baseline and the command, alternated so both see the same machine. */
function measure(args: string[], env: NodeJS.ProcessEnv): { node: number; cli: number } {
  wall(args, env); // warm the file cache once
  const node: number[] = [];
  const cli: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    node.push(wall(["-e", "0"], env));
    cli.push(wall(args, env));
  }
  return { node: median(node), cli: median(cli) };
}

async function seed(db: Database, dir: string): Promise<void> {
  for (let i = 0; i < RUNS; i++) {
    const input = join(dir, `items-${i}.jsonl`);
    writeFileSync(input, [0, 1, 2].map((n) => JSON.stringify({ id: `r${i}-${n}` })).join("\n"));
    await runPipeline({ db, pipeline: tiny, providers: { defaultProvider: "openai", get: () => { throw new Error("no model stage"); }, cost: () => 0 } }, input, { fresh: true });
  }
}

export async function benchCli(): Promise<void> {
  console.log(`\n## CLI start-up (whole process, median of ${REPEATS})\n`);
  const env = { ...process.env, DATABASE_URL: "", OPENAI_API_KEY: "", ANTHROPIC_API_KEY: "" };
  const help = measure([BIN, "--help"], env);
  row("node -e 0 (baseline)", `${help.node.toFixed(3)} s`);
  row("sluice --help", `${help.cli.toFixed(3)} s`, `${ratio(help.cli, help.node)} of node -e 0 (goal: within 3x)`);

  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-cli-"));
  try {
    const dataDir = join(dir, "pglite");
    const db = await openDatabase({ dataDir });
    await seed(db, dir);
    await db.close();
    const pg = measure([BIN, "status"], { ...env, SLUICE_DATA_DIR: dataDir });
    row(`sluice status, ${RUNS} runs, on-disk PGlite`, `${pg.cli.toFixed(3)} s`, `${ratio(pg.cli, pg.node)} of node -e 0 (goal: under 1 s)`);
    if (process.env.DATABASE_URL) {
      const fresh = await freshPostgres(process.env.DATABASE_URL);
      try {
        await seed(fresh.db, dir);
        const server = measure([BIN, "status"], { ...env, DATABASE_URL: fresh.url });
        row(`sluice status, ${RUNS} runs, Postgres`, `${server.cli.toFixed(3)} s`, `${ratio(server.cli, server.node)} of node -e 0 (goal: under 1 s)`);
      } finally {
        await fresh.drop();
      }
    } else {
      row(`sluice status, ${RUNS} runs, Postgres`, "skipped", "DATABASE_URL is not set");
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
