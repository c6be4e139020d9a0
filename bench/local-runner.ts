/**
 * Benchmark 1: the cost of durability. The demo pipeline through the local
 * runner (every stage output persisted) on PGlite and on Postgres, against a
 * bare in-memory loop doing the same stage work with no persistence, all in
 * this process and this run. Then the same at 10x the demo size (throughput
 * must not fall as the run grows), and peak RSS of a full run at 1x and 10x,
 * each in its own child process.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isLlmStage, type StageDef, type StageInput } from "../src/core/types.ts";
import { buildRequest, checkCompletion } from "../src/engine/llm-call.ts";
import { readSource } from "../src/sources/index.ts";
import { freshPostgres, type TestDatabase } from "../src/testing/databases.ts";
import { openDatabase } from "../src/store/index.ts";
import { singleProvider } from "../src/testing/harness.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import pipeline from "../pipelines/ticket-triage.ts";
import { writeTicketFiles } from "../scripts/generate-tickets.ts";
import { fmt, ratio, row } from "./report.ts";

const DEMO = join(import.meta.dirname, "..", "examples", "data", "tickets.csv");

/** The same stage work as the engine, item by item in memory: no store, no queue. */
export async function bareLoop(input: string): Promise<{ rows: number; seconds: number }> {
  const provider = createInProcessProvider();
  const started = performance.now();
  let rows = 0;
  const committed: unknown[] = [];
  for await (const record of readSource(input, pipeline.source)) {
    rows++;
    if (record.kind !== "item") continue;
    const input: StageInput = { itemId: record.itemId, item: record.item as never, outputs: {} };
    for (const stage of pipeline.stages as StageDef[]) {
      if (stage.when && !stage.when(input)) break;
      let out: unknown;
      if (isLlmStage(stage)) {
        const request = buildRequest(stage, input, `${stage.id}-${record.itemId}`);
        const checked = checkCompletion(stage, input, await provider.complete(request));
        if (!checked.ok) break;
        out = checked.value;
      } else if (stage.kind === "commit") {
        out = stage.row(input);
        committed.push(out);
      } else {
        out = await stage.run(input);
      }
      input.outputs[stage.id] = out;
      if (stage.kind === "filter" && (out as { keep: boolean }).keep === false) break;
      if (stage.kind === "validate" && (out as { status: string }).status !== "valid") break;
    }
  }
  return { rows, seconds: (performance.now() - started) / 1000 };
}

async function sluiceRun(input: string, driver: "pglite" | "postgres"): Promise<{ rows: number; seconds: number } | undefined> {
  if (driver === "postgres" && !process.env.DATABASE_URL) return undefined;
  // PGlite on disk, in a fresh data directory: what `sluice run` uses.
  const t = driver === "postgres" ? await freshPostgres(process.env.DATABASE_URL!) : await diskDatabase();
  try {
    const started = performance.now();
    const summary = await runPipeline({ db: t.db, pipeline, providers: singleProvider(createInProcessProvider()) }, input, { fresh: true });
    return { rows: summary.items.total, seconds: (performance.now() - started) / 1000 };
  } finally {
    await t.drop();
  }
}

async function diskDatabase(): Promise<TestDatabase> {
  const db = await openDatabase({ dataDir: join(mkdtempSync(join(tmpdir(), "sluice-bench-")), "pglite") });
  return { db, drop: () => db.close() };
}

function peakRss(input: string): { rssMb: number; rows: number; seconds: number } {
  const out = execFileSync(process.execPath, ["--import", "tsx", join(import.meta.dirname, "rss-child.ts"), input], { encoding: "utf8", maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

const label = (driver: "pglite" | "postgres") => `sluice local runner on ${driver === "pglite" ? "PGlite (on disk)" : "Postgres"}`;

export async function benchLocalRunner(): Promise<void> {
  console.log("\n## 1. local runner: cost of durability (demo pipeline, in-process provider)\n");
  // Every contender gets one unmeasured run first, so each is measured with
  // its code compiled (a nightly job runs for minutes, not for one cold second),
  // then three measured runs, of which the median counts: one run of the demo
  // lasts a second or two, short enough for a neighbour's burst to halve it.
  await bareLoop(DEMO);
  const bareRuns = [await bareLoop(DEMO), await bareLoop(DEMO), await bareLoop(DEMO)].map((r) => r.rows / r.seconds);
  const baseline = median(bareRuns);
  row("bare in-memory loop, no persistence", `${fmt(baseline)} items/s`, `baseline (median of ${bareRuns.map(fmt).join(", ")})`);
  for (const driver of ["pglite", "postgres"] as const) {
    if (!(await sluiceRun(DEMO, driver))) {
      row(label(driver), "skipped", "DATABASE_URL not set");
      continue;
    }
    const runs: { rows: number; seconds: number }[] = [];
    for (let i = 0; i < 3; i++) runs.push((await sluiceRun(DEMO, driver))!);
    const rates = runs.map((r) => r.rows / r.seconds);
    const rate = median(rates);
    row(label(driver), `${fmt(rate)} items/s`, `${ratio(rate, baseline)} of baseline (${runs[0]!.rows} rows; median of ${rates.map(fmt).join(", ")})`);
  }

  // The same at 10x: per-item cost must not grow with the run (a plan that
  // scans a whole stage per chunk would show here, not at 1x).
  const dir = mkdtempSync(join(tmpdir(), "sluice-bench-10x-"));
  const big = await writeTicketFiles(dir, { count: 50_800 });
  console.log("\n## 1b. 10x the demo: throughput and peak RSS (PGlite on disk, child process each)\n");
  const bareBig = await bareLoop(big.tickets);
  const baselineBig = bareBig.rows / bareBig.seconds;
  row(`bare in-memory loop, 10x demo`, `${fmt(baselineBig)} items/s`, "baseline");
  const pg = await sluiceRun(big.tickets, "postgres");
  if (pg) row(`sluice on Postgres, 10x demo`, `${fmt(pg.rows / pg.seconds)} items/s`, `${ratio(pg.rows / pg.seconds, baselineBig)} of baseline (${pg.rows} rows in ${pg.seconds.toFixed(1)} s)`);
  const small = peakRss(DEMO);
  const large = peakRss(big.tickets);
  row(`sluice on PGlite (on disk), 10x demo`, `${fmt(large.rows / large.seconds)} items/s`, `${ratio(large.rows / large.seconds, baselineBig)} of baseline (${large.rows} rows in ${large.seconds.toFixed(1)} s)`);
  row(`peak RSS, 1x demo (${fmt(small.rows)} rows)`, `${fmt(small.rssMb)} MB`, "baseline");
  row(`peak RSS, 10x demo (${fmt(large.rows)} rows)`, `${fmt(large.rssMb)} MB`, `${ratio(large.rssMb, small.rssMb)} of 1x`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
