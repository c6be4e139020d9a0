import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { afterAll, beforeAll, expect, it } from "vitest";

/**
 * What a reader retains is measured in a fresh Node process that does nothing
 * else: a test worker runs other suites' files before this one, and what they
 * leave behind (buffers, timers, a store) frees or allocates megabytes during
 * the measurement. A forced collection before each sample makes "retained"
 * memory measurable: without it heapUsed is mostly garbage. Buffers live
 * outside the JS heap, so a reader that kept the file as bytes shows up too.
 */
const PROBE = `
  const { readSource, emptyStats } = await import(${JSON.stringify(join(import.meta.dirname, "index.ts"))});
  const { MESSY_SPEC } = await import(${JSON.stringify(join(import.meta.dirname, "..", "..", "test", "fixtures", "messy.ts"))});
  const [path, every, findDuplicates] = [process.argv[1], Number(process.argv[2]), process.argv[3] === "remember"];
  const retained = () => { gc(); const m = process.memoryUsage(); return m.heapUsed + m.external; };
  const stats = emptyStats();
  const samples = [retained()];
  const started = performance.now();
  for await (const rec of readSource(path, MESSY_SPEC, { stats, findDuplicates })) {
    if (rec.kind !== "item") throw new Error("unexpected " + rec.kind + " at line " + rec.line);
    if (stats.rowsRead % every === 0) samples.push(retained());
  }
  console.log(JSON.stringify({ stats, samples, seconds: (performance.now() - started) / 1000 }));
`;

interface Probe {
  stats: {
    rowsRead: number;
    items: number;
    duplicates: number;
    quarantined: number;
  };
  /** Retained bytes before the first row, then after every `every` rows. */
  samples: number[];
  seconds: number;
}

async function probe(file: string, every: number, findDuplicates: boolean): Promise<Probe> {
  const child = spawn(
    process.execPath,
    ["--expose-gc", "--import", "tsx", "--input-type=module", "-e", PROBE, file, String(every), findDuplicates ? "remember" : "forget"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const [code] = (await once(child, "close")) as [number];
  expect(code, err).toBe(0);
  return JSON.parse(out) as Probe;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const ROWS = 50_000;
let dir: string;
let path: string;

async function writeCsv(file: string, rows: number, row: (i: number) => string): Promise<void> {
  const out = createWriteStream(file);
  out.write("id,subject,body,customer_email,created_at\n");
  for (let i = 0; i < rows; i++) {
    if (!out.write(row(i))) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sluice-mem-"));
  path = join(dir, "big.csv");
  const filler = "The nightly sync, again: lorem ipsum dolor sit amet. ".repeat(28);
  await writeCsv(path, ROWS, (i) => {
    const body = `"Row ${i} says ""hello"",\n${filler}"`;
    return `T-${String(i).padStart(6, "0")},Subject ${i},${body},user${i}@example.com,2024-05-01T10:00:00Z\n`;
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it("streams a large file without accumulating its rows", async () => {
  const fileBytes = (await stat(path)).size;
  expect(fileBytes).toBeGreaterThan(70_000_000);

  const { stats, samples, seconds } = await probe(path, 12_500, true);
  expect(stats).toEqual({
    rowsRead: ROWS,
    items: ROWS,
    duplicates: 0,
    quarantined: 0,
  });
  expect(samples).toHaveLength(1 + ROWS / 12_500);
  const peak = Math.max(...samples) - samples[0]!;
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
  const SMALL = 200_000;
  const EVERY = 25_000;
  await writeCsv(small, SMALL, (i) => `S-${String(i).padStart(7, "0")},s,b,u@example.com,2024-05-01T10:00:00Z\n`);
  // What is retained rises and falls by a MB or two as the reader's buffers
  // fill and empty: the mean of the last three samples (150,000-200,000 rows)
  // against the mean of three early ones (25,000-75,000), once the reader's
  // own buffers are made.
  const growth = async (findDuplicates: boolean) => {
    const { stats, samples } = await probe(small, EVERY, findDuplicates);
    expect(stats.items).toBe(SMALL);
    expect(samples).toHaveLength(1 + SMALL / EVERY);
    return mean(samples.slice(-3)) - mean(samples.slice(1, 4));
  };
  const [remembering, not] = await Promise.all([growth(true), growth(false)]);
  console.log(
    `sources: retained growth from rows 25k-75k to rows 150k-200k: ` + `${(remembering / 1e6).toFixed(2)} MB remembering ids, ${(not / 1e6).toFixed(2)} MB not`,
  );
  // 125,000 more ids take about 10 MB; without them what is left is the buffers' noise.
  expect(remembering).toBeGreaterThan(5_000_000);
  expect(not).toBeLessThan(remembering / 5);
});
