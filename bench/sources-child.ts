/** Snapshots a table source's rows past its cursor, `pageRows` at a time, and prints this process's peak RSS. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { definePipeline, defineStage } from "../src/core/define.ts";
import { snapshotNewRows } from "../src/sensors/snapshot.ts";
import { openDatabase } from "../src/store/index.ts";

const [url, pageRows] = [process.argv[2]!, Number(process.argv[3])];
const pipeline = definePipeline({
  id: "bench-sources",
  source: { key: "id", table: "bench_src", cursor: "updated_at" },
  stages: [defineStage({ id: "commit", kind: "commit", target: { table: "bench_out", key: "id" }, row: ({ itemId }) => ({ id: itemId }) })],
});
const db = await openDatabase({ url });
const dir = mkdtempSync(join(tmpdir(), "sluice-bench-snap-"));
const started = performance.now();
const { increment } = await snapshotNewRows(db, pipeline, dir, { pageRows });
const seconds = (performance.now() - started) / 1000;
await db.close();
rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ rows: increment?.rows ?? 0, seconds, rssMb: process.resourceUsage().maxRSS / 1024 }));
