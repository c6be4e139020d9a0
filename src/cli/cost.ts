import { Command } from "commander";
import { COST_DIMENSIONS, costReport, itemCost, type CostReport, type ItemCost } from "../inspect/costs.ts";
import type { CostDimension } from "../store/spend.ts";
import { CliError, printJson, withStore } from "./common.ts";

export interface CostCliOptions {
  by?: CostDimension[];
  pipeline?: string;
  since?: string;
  item?: string;
  json?: boolean;
  env?: NodeJS.ProcessEnv;
}

const usd = (n: number) => `$${n.toFixed(Math.abs(n) > 0 && Math.abs(n) < 0.01 ? 6 : 4)}`;
const num = (n: number) => Math.round(n).toLocaleString("en-US");

/** The human table of one roll-up. */
export function formatCostReport(r: CostReport): string {
  const width = Math.max(36, ...r.groups.map((g) => g.key.length + 1));
  const head = `${r.by.padEnd(width)} ${"calls".padStart(8)} ${"batch".padStart(7)} ${"tokens in".padStart(12)} ${"tokens out".padStart(11)} ${"cost".padStart(10)} ${"batch saved".padStart(12)} ${"reuse saved".padStart(12)} ${"cache saved".padStart(12)}`;
  const line = (key: string, g: CostReport["total"]) =>
    `${key.padEnd(width)} ${num(g.calls).padStart(8)} ${num(g.batchCalls).padStart(7)} ${num(g.inputTokens).padStart(12)} ${num(g.outputTokens).padStart(11)} ${usd(g.costUsd).padStart(10)} ${usd(g.saved.batchUsd).padStart(12)} ${usd(g.saved.reuseUsd).padStart(12)} ${usd(g.saved.cacheUsd).padStart(12)}`;
  return [head, ...r.groups.map((g) => line(g.key, g)), line("total", r.total)].join("\n");
}

/** The human report of one item's cost. */
export function formatItemCost(c: ItemCost): string {
  const lines = [`item ${c.itemId}: ${c.calls.length} provider request${c.calls.length === 1 ? "" : "s"}, paid ${usd(c.costUsd)} (list ${usd(c.listCostUsd)}, batch saved ${usd(c.batchSavedUsd)}); reused outputs saved ${usd(c.reuseSavedUsd)}`];
  if (c.calls.length) {
    lines.push("", "requests:");
    for (const a of c.calls) {
      lines.push(`  ${a.at.slice(0, 19)}  ${a.runId.padEnd(26)} ${a.stage.padEnd(12)} #${a.attempt} ${String(a.model ?? "-").padEnd(14)} ${String(a.mode ?? "-").padEnd(8)} ${num(a.inputTokens).padStart(7)} in ${num(a.outputTokens).padStart(6)} out  ${usd(a.costUsd)}${a.errorClass ? `  (${a.errorClass})` : ""}`);
    }
  }
  if (c.stages.length) {
    lines.push("", "stages:");
    for (const s of c.stages) {
      const how = !s.reused ? "" : s.madeIn && s.madeIn !== s.runId ? `reused from ${s.madeIn} (made for ${usd(s.outputCostUsd ?? 0)})` : "reused within the run: the request cache's or an identical request's answer, or (a stage without a model) its review decision taken on again";
      lines.push(`  ${s.runId.padEnd(26)} ${s.stage.padEnd(12)} ${s.status.padEnd(22)} ${how}`);
    }
  }
  return lines.join("\n");
}

/** `sluice cost`: a roll-up (grouped by the `--by` dimensions together), or one item's cost with `--item`. */
export async function costCli(options: CostCliOptions): Promise<CostReport | ItemCost> {
  return withStore(options.env, async (db) => {
    if (options.item !== undefined) {
      const item = await itemCost(db, options.item, options.pipeline);
      if (options.json) printJson(item);
      else process.stdout.write(`${formatItemCost(item)}\n`);
      return item;
    }
    const report = await costReport(db, options.by ?? ["pipeline"], { pipeline: options.pipeline, since: options.since });
    if (options.json) printJson(report);
    else process.stdout.write(`${formatCostReport(report)}\n`);
    return report;
  });
}

export function parseDimensions(value: string): CostDimension[] {
  const dims = value.split(",").map((d) => d.trim()).filter(Boolean);
  const bad = dims.filter((d) => !COST_DIMENSIONS.includes(d as CostDimension));
  if (bad.length || dims.length === 0) throw new CliError(`--by must be a list of ${COST_DIMENSIONS.join(", ")}; got "${value}"`);
  return dims as CostDimension[];
}

function parseSince(value: string): string {
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new CliError(`--since must be a date or time (e.g. 2025-06-01), got "${value}"`);
  return new Date(t).toISOString();
}

export function costCommand(): Command {
  return new Command("cost")
    .option("--by <dims>", `one or more of ${COST_DIMENSIONS.join(", ")}, comma-separated`, "pipeline")
    .option("-p, --pipeline <id>", "only this pipeline")
    .option("--since <date>", "only calls made (and reuse recorded) since this date")
    .option("--item <id>", "everything one item cost, across runs")
    .option("--json", "print JSON")
    .action(async (opts: { by: string; pipeline?: string; since?: string; item?: string; json?: boolean }) => {
      const by = parseDimensions(opts.by);
      const since = opts.since === undefined ? undefined : parseSince(opts.since);
      await costCli({ by, pipeline: opts.pipeline, since, item: opts.item, json: opts.json });
    });
}
