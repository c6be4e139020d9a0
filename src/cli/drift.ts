import { Command } from "commander";
import { DEFAULT_THRESHOLDS, driftReport, type DriftReport, type DriftThresholds } from "../inspect/drift.ts";
import { CliError, loadPipeline, parsePositiveInt, printJson, withStore } from "./common.ts";

export interface DriftCliOptions {
  /** A pipeline id, or the path of a pipeline file (its id is used). */
  pipeline: string;
  last?: number;
  thresholds?: Partial<DriftThresholds>;
  failOnDrift?: boolean;
  json?: boolean;
  env?: NodeJS.ProcessEnv;
}

const pct = (x: number | null) => (x === null ? "-" : `${(x * 100).toFixed(1)}%`);

/** The human report: one line per stage and metric, a column per run, then the flags. */
export function formatDrift(r: DriftReport): string {
  if (r.runs.length === 0) return `no finished run of ${r.pipeline} in the store`;
  const lines = [`drift ${r.pipeline} over ${r.runs.length} run${r.runs.length === 1 ? "" : "s"} (oldest first):`];
  r.runs.forEach((run, i) => lines.push(`  [${i + 1}] ${run.id}  ${run.createdAt.slice(0, 19)}`));
  const header = `${"stage".padEnd(12)} ${"".padEnd(22)}${r.runs.map((_, i) => `[${i + 1}]`.padStart(12)).join("")}`;
  lines.push("", header);
  const row = (stage: string, label: string, cells: string[]) => lines.push(`${stage.padEnd(12)} ${label.padEnd(22)}${cells.map((c) => c.padStart(12)).join("")}`);
  for (const s of r.stages) {
    row(s.id, "items reached", s.runs.map((x) => String(x.reached)));
    if (s.runs.some((x) => x.rates.gatePass.value !== null && x.rates.gatePass.value < 1)) row("", "gate pass", s.runs.map((x) => pct(x.rates.gatePass.value)));
    if (s.runs.some((x) => x.rates.dropped.k > 0)) row("", "dropped (filter)", s.runs.map((x) => pct(x.rates.dropped.value)));
    row("", "failed", s.runs.map((x) => pct(x.rates.failed.value)));
    row("", "review", s.runs.map((x) => pct(x.rates.review.value)));
    for (const [field, js] of Object.entries(s.labelDivergence)) row("", `${field}: JS vs previous`, js.map((v) => (v === null ? "-" : v.toFixed(3))));
    if (s.runs.some((x) => x.perItem.costUsd)) {
      row("", "tokens per item", s.runs.map((x) => (x.perItem.tokens === null ? "-" : x.perItem.tokens.toFixed(1))));
      row("", "cost per item", s.runs.map((x) => (x.perItem.costUsd === null ? "-" : `$${x.perItem.costUsd.toFixed(6)}`)));
    }
  }
  const t = r.thresholds;
  lines.push("", `thresholds: labels JS ≥ ${t.js} bits, rates ±${t.rate * 100} points, per item ±${t.relative * 100}%; each significant at p < ${t.alpha}`);
  lines.push(r.flags.length ? `${r.flags.length} change${r.flags.length === 1 ? "" : "s"} beyond the thresholds:` : "no change beyond the thresholds");
  for (const f of r.flags) lines.push(`  ! ${f.message}`);
  return lines.join("\n");
}

/** `sluice drift`: per stage across the last runs, with changes beyond the thresholds flagged; `--fail-on-drift` exits 1 when there are any. */
export async function driftCli(options: DriftCliOptions): Promise<DriftReport> {
  const id = /\.[cm]?[jt]s$/.test(options.pipeline) ? (await loadPipeline(options.pipeline)).id : options.pipeline;
  const report = await withStore(options.env, (db) => driftReport(db, id, { last: options.last, thresholds: options.thresholds }));
  if (options.json) printJson(report);
  else process.stdout.write(`${formatDrift(report)}\n`);
  if (options.failOnDrift && report.flags.length) process.exitCode = 2;
  return report;
}

function parseFraction(value: string, name: string, max = 1): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > max) throw new CliError(`${name} must be a number above 0 and at most ${max}, got "${value}"`);
  return n;
}

export function driftCommand(): Command {
  return new Command("drift")
    .argument("<pipeline>", "pipeline id, or path to a pipeline file")
    .option("--last <n>", "how many of the latest finished runs", "5")
    .option("--js <bits>", "flag a label distribution whose Jensen-Shannon divergence from the run before reaches this", String(DEFAULT_THRESHOLDS.js))
    .option("--rate <points>", "flag a rate that moves by this much (0.05 = 5 points)", String(DEFAULT_THRESHOLDS.rate))
    .option("--relative <share>", "flag tokens or cost per item that move by this share (0.25 = 25%)", String(DEFAULT_THRESHOLDS.relative))
    .option("--alpha <p>", "significance level a change must also reach", String(DEFAULT_THRESHOLDS.alpha))
    .option("--fail-on-drift", "exit with status 2 when any change is flagged")
    .option("--json", "print the report as one JSON object")
    .action(async (pipeline: string, opts: { last: string; js: string; rate: string; relative: string; alpha: string; failOnDrift?: boolean; json?: boolean }) => {
      const last = parsePositiveInt(opts.last, "--last");
      if (last < 2) throw new CliError(`--last must be at least 2 to compare runs, got "${opts.last}"`);
      const thresholds = { js: parseFraction(opts.js, "--js"), rate: parseFraction(opts.rate, "--rate"), relative: parseFraction(opts.relative, "--relative", 100), alpha: parseFraction(opts.alpha, "--alpha") };
      await driftCli({ pipeline, last, thresholds, failOnDrift: opts.failOnDrift, json: opts.json });
    });
}
