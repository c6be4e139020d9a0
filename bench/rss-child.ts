/** Runs the demo pipeline over one input on a fresh on-disk PGlite and prints its peak RSS. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../src/store/index.ts";
import { singleProvider } from "../src/testing/harness.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import pipeline from "../pipelines/ticket-triage.ts";

const input = process.argv[2]!;
const db = await openDatabase({ dataDir: join(mkdtempSync(join(tmpdir(), "sluice-rss-")), "pglite") });
const started = performance.now();
const summary = await runPipeline({ db, pipeline, providers: singleProvider(createInProcessProvider()) }, input, { fresh: true });
const seconds = (performance.now() - started) / 1000;
await db.close();
console.log(JSON.stringify({ rows: summary.items.total, seconds, rssMb: process.resourceUsage().maxRSS / 1024 }));
