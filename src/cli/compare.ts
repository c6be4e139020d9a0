import { Command } from "commander";
import { setMaxListeners } from "node:events";
import { compareStage, type CompareRequest, type CompareResult } from "../inspect/compare.ts";
import { createProviders } from "../preset/providers.ts";
import { CliError, loadPipeline, parsePositiveInt, printJson, withStore } from "./common.ts";
import { formatChange, formatLabels } from "./diff.ts";

const usd = (n: number) => `$${n.toFixed(6)}`;
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/** The human report of an evaluation slice. */
export function formatCompare(r: CompareResult, showChanged = 10): string {
  const lines = [
    `compare ${r.pipeline}/${r.stage}: current definition ${r.after.version} vs ${r.before.version} as used by run ${r.baseRunId}`,
    `sample ${r.sampled} of ${r.reached} items that reached ${r.stage} (seed ${JSON.stringify(r.seed)}); nothing committed`,
    "",
    `agreement  ${r.agreement.equal}/${r.agreement.compared} outputs equal (${pct(r.agreement.rate)})`,
  ];
  if (r.gatedOutNow) lines.push(`gated out by the current gate: ${r.gatedOutNow}`);
  if (r.failedNow) lines.push(`failed with the current definition: ${r.failedNow}`);
  if (r.labels?.length) lines.push(...formatLabels(r.stage, r.labels, "  "));
  if (r.people) {
    lines.push("", `agreement with people (${r.people.labelled} sampled item(s) labelled in review)`);
    for (const after of r.people.after) {
      const before = r.people.before.find((b) => b.field === after.field);
      lines.push(`  ${after.field}: current ${after.same}/${after.compared} (${pct(after.agreement)})${before ? `, run ${r.baseRunId} ${before.same}/${before.compared} (${pct(before.agreement)})` : ""}`);
      for (const l of after.byLabel) {
        const b = before?.byLabel.find((x) => x.label === l.label);
        lines.push(`    ${l.label.padEnd(14)} current ${l.same}/${l.compared} (${pct(l.agreement)})${b ? `  before ${b.same}/${b.compared} (${pct(b.agreement)})` : ""}`);
      }
    }
  }
  lines.push(
    "",
    `cost per item  before ${usd(r.before.costPerItemUsd)}  after ${usd(r.after.costPerItemUsd)}` +
      (r.before.costPerItemUsd > 0 ? `  (${(r.after.costPerItemUsd / r.before.costPerItemUsd).toFixed(2)}x)` : ""),
    `this comparison: ${r.after.providerCalls} provider call${r.after.providerCalls === 1 ? "" : "s"}, ${r.after.reused} reused, spent ${usd(r.after.spentUsd)}${r.after.providerCalls ? ` (recorded as ${r.recordedAs})` : ""}`,
  );
  if (r.changed.length) {
    lines.push("", `changed items (${r.changed.length}${r.changed.length > showChanged ? `, first ${showChanged}` : ""}):`);
    for (const c of r.changed.slice(0, showChanged)) lines.push(`  ${c.itemId}`, ...formatChange(c.before, c.after));
  }
  return lines.join("\n");
}

export interface CompareCliOptions extends CompareRequest {
  pipeline: string;
  json?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** `sluice compare`: judge a stage's current definition on a slice before paying for the full workload. */
export async function compareCli(options: CompareCliOptions): Promise<CompareResult> {
  const env = options.env ?? process.env;
  const pipeline = await loadPipeline(options.pipeline);
  const def = pipeline.stages.find((s) => s.id === options.stage);
  if (!def) throw new CliError(`pipeline ${pipeline.id} has no stage "${options.stage}" (stages: ${pipeline.stages.map((s) => s.id).join(", ")})`);
  if (def.kind === "commit") throw new CliError(`stage ${def.id} is a commit: it writes the target and has nothing to compare; compare the stage before it`);
  return withStore(env, async (db) => {
    const preset = await createProviders(env);
    const controller = new AbortController();
    setMaxListeners(0, controller.signal);
    const onSignal = () => controller.abort(new CliError("interrupted; nothing was committed (calls already paid are recorded)"));
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      process.stderr.write(`${preset.notice}\nstore: ${db.description}\n`);
      const result = await compareStage(
        { db, pipeline, providers: preset.providers, signal: controller.signal },
        { stage: options.stage, sample: options.sample, seed: options.seed, from: options.from, labelled: options.labelled },
      );
      if (options.json) printJson(result);
      else process.stdout.write(`${formatCompare(result)}\n`);
      return result;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      await preset.close();
    }
  });
}

export function compareCommand(): Command {
  return new Command("compare")
    .argument("<pipeline>", "pipeline id (pipelines/<id>.ts) or path to a pipeline file")
    .requiredOption("-s, --stage <id>", "the stage to evaluate")
    .requiredOption("-n, --sample <n>", "how many items to sample")
    .option("--seed <s>", "sample seed (the same seed picks the same items)", "sluice")
    .option("--from <runId>", "the run to compare against (default: the latest finished run that reached the stage)")
    .option("--labelled", "sample only items people labelled in review, to judge the definition against them")
    .option("--json", "print the result as one JSON object")
    .action(async (pipeline: string, opts: { stage: string; sample: string; seed: string; from?: string; labelled?: boolean; json?: boolean }) => {
      await compareCli({ pipeline, stage: opts.stage, sample: parsePositiveInt(opts.sample, "--sample"), seed: opts.seed, from: opts.from, labelled: opts.labelled, json: opts.json });
    });
}
