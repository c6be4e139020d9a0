/**
 * Benchmark: the memory one provider batch costs the process that sends it,
 * with the simulator in the same process (as `npm run demo` runs it). Each
 * run is a child process (`batch-child.ts`): sluice's way (the JSONL written
 * to a temporary file and uploaded from disk, results read as a stream)
 * against the same batch built as one string and uploaded from a Buffer, its
 * results read whole (how sluice sent it before), alternated, median of 3, at
 * the demo's size (2,582 requests) and at 20,000.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fmt, ratio, row } from "./report.ts";

const CHILD = join(import.meta.dirname, "batch-child.ts");
const REPEATS = 3;

interface Measured {
  bytes: number;
  addedRssMb: number;
  cpuS: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function measure(mode: "disk" | "memory", requests: number): Measured {
  const out = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", CHILD, mode, String(requests)], { encoding: "utf8", maxBuffer: 1 << 24 });
  if (out.status !== 0) throw new Error(`batch-child ${mode} ${requests} exited ${out.status}: ${out.stderr.trim().split("\n").at(-1)}`);
  return JSON.parse(out.stdout.trim().split("\n").at(-1)!) as Measured;
}

export async function benchBatch(): Promise<void> {
  console.log(`\n## batch: the RSS one OpenAI batch adds to the process sending it (simulator in the same process), median of ${REPEATS}\n`);
  for (const requests of [2_582, 20_000]) {
    const disk: Measured[] = [];
    const memory: Measured[] = [];
    for (let i = 0; i < REPEATS; i++) {
      memory.push(measure("memory", requests));
      disk.push(measure("disk", requests));
    }
    const mb = (ms: Measured[]) => median(ms.map((m) => m.addedRssMb));
    const cpu = (ms: Measured[]) => median(ms.map((m) => m.cpuS));
    const runs = (ms: Measured[]) => ms.map((m) => fmt(m.addedRssMb)).join(", ");
    const size = `${fmt(requests)} requests (${(disk[0]!.bytes / 1048576).toFixed(1)} MB)`;
    row(`${size}: in memory (baseline)`, `+${fmt(mb(memory))} MB`, `CPU ${cpu(memory).toFixed(2)} s (runs: ${runs(memory)})`);
    row(`  sluice: from disk, read as a stream`, `+${fmt(mb(disk))} MB`, `${mb(memory) > 0 ? ratio(mb(disk), mb(memory)) : "n/a"} of in memory; CPU ${ratio(cpu(disk), cpu(memory))} (runs: ${runs(disk)})`);
  }
}
