import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { targetColumns } from "../src/core/target.ts";
import { SOURCE_PAGE_ROWS, loadSourceTable } from "../src/store/sources.ts";
import { freshPostgres } from "../src/testing/databases.ts";

/**
 * A table source read past its cursor into the run's snapshot: peak RSS of a
 * child process reading 100,000 rows a page at a time (sluice's default page)
 * against the same read in one page (every row held at once: how a source was
 * read before pages), both measured in this run. Postgres only (the source
 * table lives in the store's database; a child opens it while this process
 * holds it).
 */

const ROWS = 100_000;
const columns = targetColumns({ type: "object", properties: { id: { type: "string" }, name: { type: "string" }, notes: { type: "string" } } }, "id");
const notes = "Mid-market logistics company; headcount unknown, founding year missing, website outdated. ".repeat(4);

function child(url: string, pageRows: number): { rows: number; seconds: number; rssMb: number } {
  const out = execFileSync(process.execPath, ["--import", "tsx", join(import.meta.dirname, "sources-child.ts"), url, String(pageRows)], { encoding: "utf8", maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

export async function benchSources(): Promise<void> {
  console.log("\n## 8. table sources: reading rows past the cursor a page at a time\n");
  if (!process.env.DATABASE_URL) {
    console.log("skipped: DATABASE_URL not set");
    return;
  }
  const t = await freshPostgres(process.env.DATABASE_URL);
  try {
    const rows = Array.from({ length: ROWS }, (_, i) => ({ id: `C-${i}`, name: `Company ${i}`, notes: `${notes}#${i}` }));
    await loadSourceTable(t.db, "bench_src", "id", columns, rows);
    const onePage = child(t.url!, ROWS * 2);
    const paged = child(t.url!, SOURCE_PAGE_ROWS);
    console.log(`| read | rows | peak RSS | seconds |`);
    console.log(`|---|---|---|---|`);
    console.log(`| one page (all rows at once), baseline | ${onePage.rows} | ${onePage.rssMb.toFixed(0)} MB | ${onePage.seconds.toFixed(2)} |`);
    console.log(`| pages of ${SOURCE_PAGE_ROWS} (sluice) | ${paged.rows} | ${paged.rssMb.toFixed(0)} MB (${(paged.rssMb / onePage.rssMb).toFixed(2)}x of baseline) | ${paged.seconds.toFixed(2)} (${(paged.seconds / onePage.seconds).toFixed(2)}x) |`);
  } finally {
    await t.drop();
  }
}
