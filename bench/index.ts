/**
 * `npm run bench`: every benchmark prints its figure next to a baseline
 * measured in the same run, as a ratio; these machines are shared and noisy,
 * so absolute times from one run prove little.
 */
import { benchBatch } from "./batch.ts";
import { benchChaos } from "./chaos.ts";
import { benchCli } from "./cli.ts";
import { benchCost } from "./cost.ts";
import { benchFootprint } from "./footprint.ts";
import { benchLocalRunner } from "./local-runner.ts";
import { benchOverhead } from "./overhead.ts";
import { benchRateLimit } from "./rate-limit.ts";
import { benchRerun } from "./rerun.ts";
import { benchScale } from "./scale.ts";
import { benchSources } from "./sources.ts";
import { benchWritePath } from "./write-path.ts";

const only = process.argv[2];
const benches: Record<string, () => Promise<void>> = {
  local: benchLocalRunner,
  "rate-limit": benchRateLimit,
  overhead: benchOverhead,
  rerun: benchRerun,
  chaos: benchChaos,
  cost: benchCost,
  cli: benchCli,
  scale: benchScale,
  sources: benchSources,
  footprint: benchFootprint,
  "write-path": benchWritePath,
  batch: benchBatch,
};
console.log(`sluice benchmarks · node ${process.version} · ${new Date().toISOString()}`);
for (const [name, run] of Object.entries(benches)) {
  if (!only || only === name) await run();
}
