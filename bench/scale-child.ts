/**
 * One demo run for the scale benchmark, in a process of its own so its peak
 * RSS is its own: `node --import tsx bench/scale-child.ts <pglite|postgres> <input.csv> [heap.heapsnapshot]`.
 * On Postgres it runs in a fresh database on the server behind DATABASE_URL;
 * on PGlite, in a fresh on-disk data directory (the store `sluice run` uses).
 * With the in-process provider, or, when SLUICE_SCALE_SIM_URL names a
 * simulator running in another process, through the official SDKs over HTTP
 * as against a real provider (realtime calls, and the batch API where the
 * pipeline's stage is `auto`).
 * Prints one line of JSON: rows, seconds, peak RSS, and the heap left once the run is over.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeHeapSnapshot } from "node:v8";
import { openDatabase } from "../src/store/index.ts";
import { freshPostgres } from "../src/testing/databases.ts";
import { singleProvider } from "../src/testing/harness.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { createProviders } from "../src/preset/providers.ts";
import pipeline from "../pipelines/ticket-triage.ts";

const [store, input, snapshot] = process.argv.slice(2);
if ((store !== "pglite" && store !== "postgres") || !input) {
  console.error("usage: scale-child.ts <pglite|postgres> <input.csv> [heap.heapsnapshot]");
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), "sluice-scale-"));
const opened =
  store === "postgres"
    ? await freshPostgres(process.env.DATABASE_URL ?? "postgres://postgres:postgres@127.0.0.1:5432/postgres")
    : await openDatabase({ dataDir: join(dir, "pglite") }).then((db) => ({ db, drop: () => db.close() }));
const sim = process.env.SLUICE_SCALE_SIM_URL;
const preset = sim
  ? await createProviders({ OPENAI_API_KEY: "sk-sim", OPENAI_BASE_URL: `${sim}/v1`, ANTHROPIC_API_KEY: "sk-sim", ANTHROPIC_BASE_URL: sim })
  : undefined;
try {
  const started = performance.now();
  const providers = preset?.providers ?? singleProvider(createInProcessProvider());
  const summary = await runPipeline({ db: opened.db, pipeline, providers }, input, { fresh: true });
  const seconds = (performance.now() - started) / 1000;
  globalThis.gc?.();
  const heapMb = process.memoryUsage().heapUsed / 2 ** 20;
  // Read before the snapshot: writing one takes memory of its own (a 100k run on Postgres peaked at 403 MB, 783 MB read after it).
  const rssMb = process.resourceUsage().maxRSS / 1024;
  if (snapshot) writeHeapSnapshot(snapshot);
  console.log(JSON.stringify({ store, rows: summary.items.total, seconds, rssMb, heapMb }));
} finally {
  await preset?.close();
  await opened.drop();
  rmSync(dir, { recursive: true, force: true });
}
