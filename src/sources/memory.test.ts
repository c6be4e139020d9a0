import { createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, expect, it } from "vitest";
import { MESSY_SPEC } from "../../test/fixtures/messy.ts";
import { emptyStats, readSource } from "./index.ts";

// A forced collection makes "retained" memory measurable: without it heapUsed is mostly garbage.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const ROWS = 50_000;
let dir: string;
let path: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sluice-mem-"));
  path = join(dir, "big.csv");
  const out = createWriteStream(path);
  out.write("id,subject,body,customer_email,created_at\n");
  const filler = "The nightly sync, again: lorem ipsum dolor sit amet. ".repeat(28);
  for (let i = 0; i < ROWS; i++) {
    const body = `"Row ${i} says ""hello"",\n${filler}"`;
    if (!out.write(`T-${String(i).padStart(6, "0")},Subject ${i},${body},user${i}@example.com,2024-05-01T10:00:00Z\n`)) {
      await once(out, "drain");
    }
  }
  out.end();
  await once(out, "finish");
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const retained = () => {
  gc();
  const m = process.memoryUsage();
  // Buffers live outside the JS heap: a reader that kept the file as bytes must show up too.
  return m.heapUsed + m.external;
};

it("streams a large file without accumulating its rows", async () => {
  const fileBytes = (await stat(path)).size;
  expect(fileBytes).toBeGreaterThan(70_000_000);

  const before = retained();
  let peak = 0;
  const stats = emptyStats();
  const started = performance.now();
  for await (const rec of readSource(path, MESSY_SPEC, { stats })) {
    if (rec.kind !== "item") throw new Error(`unexpected ${rec.kind} at line ${rec.line}`);
    if (stats.rowsRead % 12_500 === 0) peak = Math.max(peak, retained() - before);
  }
  const seconds = (performance.now() - started) / 1000;

  expect(stats).toEqual({ rowsRead: ROWS, items: ROWS, duplicates: 0, quarantined: 0 });
  // What legitimately stays is one id and hash per distinct item (a few MB here);
  // holding the rows would retain at least the file's size.
  expect(peak).toBeLessThan(fileBytes * 0.2);
  console.log(
    `sources: ${ROWS} rows, ${(fileBytes / 1e6).toFixed(0)} MB in ${seconds.toFixed(2)} s ` +
      `(${Math.round(ROWS / seconds)} rows/s); peak retained growth ${(peak / 1e6).toFixed(1)} MB`,
  );
});

it("remembers no id when the caller finds duplicates (a run's load, in the store)", async () => {
  // Many small rows, so the ids are most of what a reader could keep.
  const small = join(dir, "small.csv");
  const out = createWriteStream(small);
  out.write("id,subject,body,customer_email,created_at\n");
  const SMALL = 200_000;
  for (let i = 0; i < SMALL; i++) {
    if (!out.write(`S-${String(i).padStart(7, "0")},s,b,u@example.com,2024-05-01T10:00:00Z\n`)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
  const growth = async (findDuplicates: boolean) => {
    let first = 0;
    let last = 0;
    let n = 0;
    for await (const rec of readSource(small, MESSY_SPEC, { findDuplicates })) {
      if (rec.kind !== "item") throw new Error(`unexpected ${rec.kind} at line ${rec.line}`);
      if (++n === SMALL / 4) first = retained();
      if (n === SMALL) last = retained();
    }
    expect(n).toBe(SMALL);
    return last - first;
  };
  const remembering = await growth(true);
  const not = await growth(false);
  console.log(`sources: retained growth over the last ${(SMALL * 0.75).toLocaleString("en-US")} of ${SMALL.toLocaleString("en-US")} rows: ${(remembering / 1e6).toFixed(1)} MB remembering ids, ${(not / 1e6).toFixed(1)} MB not`);
  // 150,000 more ids take several MB; without them what is left is the collector's noise.
  expect(remembering).toBeGreaterThan(5_000_000);
  expect(not).toBeLessThan(remembering / 5);
});
