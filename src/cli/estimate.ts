import { Command } from "commander";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { SluiceError } from "../core/errors.ts";
import type { PipelineDef } from "../core/types.ts";
import { findBaseRun, planRerun, type RerunRequest } from "../engine/rerun.ts";
import { sampleItems } from "../inspect/compare.ts";
import { estimateCost, type CostEstimate, type EstimateItem, type Range } from "../inspect/estimate.ts";
import { createProviders } from "../preset/providers.ts";
import { checkInput, runPipeline } from "../runners/local/index.ts";
import { readSource, sourceFingerprint } from "../sources/index.ts";
import type { Database } from "../store/database.ts";
import { itemsOfRun } from "../store/spend.ts";
import { sourceKind } from "../sensors/increments.ts";
import { unreadFiles } from "../sensors/files.ts";
import { withPendingRows } from "../sensors/snapshot.ts";
import { CliError, loadPipeline, parseDeadline, parsePositiveInt, printJson, withStore } from "./common.ts";
import { createCliLogger } from "./logger.ts";
import { engineOptionsFromEnv } from "./session.ts";

/** The estimate of a `--sample` run: the sample run's id and what it paid, then the estimate for the whole input. */
export type EstimateResult = CostEstimate & { sample?: { runId: string; items: number; costUsd: number } };

export interface EstimateCliOptions {
  pipeline: string;
  /** The file of items; for a table or query source, absent: the rows past its cursor are estimated. */
  input?: string;
  /** Run this many items of the input for real first (recorded like any run), so the estimate rests on their answers. */
  sample?: number;
  seed?: string;
  /** The run's deadline from now (`--deadline 6h`): `auto` stages are priced as the engine would choose under it. */
  deadline?: string;
  json?: boolean;
  env?: NodeJS.ProcessEnv;
}

/**
 * `sluice estimate` (and `sluice run --dry-run`): what running the input would
 * cost, as a range. Without `--input`, a pipeline reading a table or query
 * source is estimated over the rows past its cursor, and one reading a glob
 * over the files not read yet, as its next `sluice trigger` would read them;
 * the cursor does not move, and no file is marked read.
 */
export async function estimateCli(options: EstimateCliOptions): Promise<EstimateResult> {
  const env = options.env ?? process.env;
  const pipeline = await loadPipeline(options.pipeline);
  if (options.input !== undefined) {
    const input = options.input;
    await checkInput(input, pipeline);
    const read = await readItems(input, pipeline);
    return withStore(env, (db) => estimateOver(db, pipeline, { path: input, label: input, ...read }, options, env));
  }
  const kind = sourceKind(pipeline);
  if (kind === "file") throw new CliError(`pipeline ${pipeline.id} reads a file: give it with --input`);
  if (kind === "glob") return withStore(env, (db) => estimateUnreadFiles(db, pipeline, options, env));
  return withStore(env, (db) =>
    withPendingRows(db, pipeline, async (pending) => {
      const read = pending.snapshot ? await readItems(pending.snapshot, pipeline) : { items: [], rejected: 0 };
      const label = `${pending.rows} row${pending.rows === 1 ? "" : "s"} of ${pipeline.source.table ?? "its query"} past cursor ${pipeline.source.cursor} ${pending.from ?? "(none yet: every row)"}`;
      if (!pending.snapshot && options.sample !== undefined) throw new CliError(`no rows past the cursor of ${pipeline.id}: nothing to sample`);
      return estimateOver(db, pipeline, { path: pending.snapshot, label, ...read }, options, env);
    }),
  );
}

/**
 * A glob source without `--input`: the files its next `sluice trigger` would
 * read (matched, not read yet, and still for `FILE_SETTLE_MS`), each a run of
 * its own, estimated together. A file still being written is named, not
 * counted. `--sample` takes one file: with several, it is given with `--input`.
 */
async function estimateUnreadFiles(db: Database, pipeline: PipelineDef, options: EstimateCliOptions, env: NodeJS.ProcessEnv): Promise<EstimateResult> {
  const files = await unreadFiles(db, pipeline);
  if (options.sample !== undefined && files.length !== 1) {
    throw new CliError(
      files.length === 0
        ? `no file matching ${pipeline.source.glob} is unread: nothing to sample`
        : `--sample runs one file, and ${files.length} files matching ${pipeline.source.glob} are unread: give one with --input`,
    );
  }
  const items: EstimateItem[] = [];
  const notes: string[] = [];
  let rejected = 0;
  for (const f of files) {
    try {
      await checkInput(f.file, pipeline);
    } catch (err) {
      // As the trigger skips it: a file that cannot be read at all (empty, no key column, not UTF-8) starts no run.
      if (!(err instanceof SluiceError)) throw err;
      notes.push(`${f.path} would be skipped, as a trigger skips it: ${err.message}`);
      continue;
    }
    const read = await readItems(f.file, pipeline);
    items.push(...read.items);
    rejected += read.rejected;
  }
  const named = files.slice(0, 3).map((f) => f.path).join(", ") + (files.length > 3 ? ` and ${files.length - 3} more` : "");
  const label = files.length
    ? `${files.length} unread file${files.length === 1 ? "" : "s"} matching ${pipeline.source.glob} (${named})`
    : `no unread file matching ${pipeline.source.glob}`;
  for (const f of files.unsettled) notes.push(`${f.path} changed ${(f.changedMsAgo / 1000).toFixed(1)} s ago and may still be being written: not counted`);
  return estimateOver(db, pipeline, { path: files.length === 1 ? files[0]!.file : undefined, label, items, rejected, notes }, options, env);
}

/** What an estimate is over: the file (for `--sample`), how it is named, its items and rows it would reject. */
interface EstimateSource {
  path?: string;
  label: string;
  items: EstimateItem[];
  rejected: number;
  /** What else the estimate should say of its input. */
  notes?: string[];
}

async function estimateOver(db: Database, pipeline: PipelineDef, source: EstimateSource, options: EstimateCliOptions, env: NodeJS.ProcessEnv): Promise<EstimateResult> {
  const { items, rejected } = source;
  if (options.sample !== undefined && options.sample >= items.length) {
    const n = items.length.toLocaleString("en-US");
    throw new CliError(`--sample ${options.sample} would run all ${n} item${items.length === 1 ? "" : "s"} of the input (${source.label}) and pay for them: sample fewer, or run it with \`sluice run\``);
  }
  const preset = await createProviders(env);
  try {
    process.stderr.write(`${preset.notice}\nstore: ${db.description}\n`);
    let sample: EstimateResult["sample"];
    if (options.sample !== undefined && source.path !== undefined) {
      const path = await writeSample(env, pipeline, source.path, items, options.sample, options.seed ?? "sluice");
      const summary = await runPipeline({ db, pipeline, providers: preset.providers, options: engineOptionsFromEnv(env), logger: createCliLogger(env) }, path);
      sample = { runId: summary.runId, items: summary.items.total, costUsd: summary.costUsd };
      process.stderr.write(`sample: run ${summary.runId} over ${summary.items.total} items of the input paid ${usd(summary.costUsd)} (recorded; a full run reuses its outputs)\n`);
    }
    const est = await estimateCost({ db, pipeline, providers: preset.providers, options: engineOptionsFromEnv(env), deadline: options.deadline }, { source: source.label, items });
    if (rejected) est.notes.unshift(`${rejected} row${rejected === 1 ? "" : "s"} of the input would be quarantined or deduplicated: never sent to a model`);
    if (source.notes) est.notes.push(...source.notes);
    const result: EstimateResult = sample ? { ...est, sample } : est;
    print(result, options.json);
    return result;
  } finally {
    await preset.close();
  }
}

export interface RerunEstimateCliOptions extends RerunRequest {
  pipeline: string;
  deadline?: string;
  json?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** `sluice rerun --dry-run`: what the rerun would pay for (an unchanged stage comes to $0). Records no run. */
export async function estimateRerunCli(options: RerunEstimateCliOptions): Promise<CostEstimate> {
  const env = options.env ?? process.env;
  const pipeline = await loadPipeline(options.pipeline);
  return withStore(env, async (db) => {
    const base = await findBaseRun(db, pipeline.id, options.from);
    const { stageIndex } = planRerun(pipeline, base, options);
    const items = await runItemsOf(db, base.id);
    const preset = await createProviders(env);
    try {
      process.stderr.write(`${preset.notice}\nstore: ${db.description}\n`);
      const est = await estimateCost(
        { db, pipeline, providers: preset.providers, options: engineOptionsFromEnv(env), deadline: options.deadline },
        { source: `rerun of ${base.id} from stage ${options.stage}${options.only ? " (only)" : ""}`, items, stopAfter: options.only ? stageIndex : undefined },
      );
      print(est, options.json);
      return est;
    } finally {
      await preset.close();
    }
  });
}

async function runItemsOf(db: Database, runId: string): Promise<EstimateItem[]> {
  return (await itemsOfRun(db, runId)).map((r) => ({ itemId: r.item_id, item: r.data, contentHash: r.content_hash }));
}

/** The items a run of the file would load (in file order), and how many rows it would reject. */
export async function readItems(path: string, pipeline: PipelineDef): Promise<{ items: EstimateItem[]; rejected: number }> {
  const items: EstimateItem[] = [];
  let rejected = 0;
  for await (const rec of readSource(path, pipeline.source)) {
    if (rec.kind === "item") items.push({ itemId: rec.itemId, item: rec.item, contentHash: rec.contentHash });
    else rejected++;
  }
  return { items, rejected };
}

/**
 * Write a seeded sample of the input's items as a file of its own, beside the
 * store: a run over it is an ordinary run, and the same sample of the same
 * input is the same file (so a second `--sample` pays nothing).
 */
export async function writeSample(env: NodeJS.ProcessEnv, pipeline: PipelineDef, input: string, items: EstimateItem[], n: number, seed: string): Promise<string> {
  const chosen = new Set(sampleItems(items.map((i) => i.itemId), n, seed));
  const rows = items.filter((i) => chosen.has(i.itemId)).map((i) => i.item as Record<string, unknown>);
  const dir = env.SLUICE_DATA_DIR && !env.DATABASE_URL ? join(dirname(env.SLUICE_DATA_DIR), "samples") : join(process.cwd(), ".sluice", "samples");
  mkdirSync(dir, { recursive: true });
  const csv = pipeline.source.format === "csv";
  const name = `${pipeline.id}-${(await sourceFingerprint(input)).slice(0, 12)}-${seed.replace(/[^\w-]/g, "_").slice(0, 24)}-${n}.${csv ? "csv" : "jsonl"}`;
  const path = join(dir, name);
  writeFileSync(path, csv ? toCsv(rows) : `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
  return path;
}

function toCsv(rows: Record<string, unknown>[]): string {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) => {
    const s = v === undefined || v === null ? "" : String(v);
    return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return `${[columns.join(","), ...rows.map((r) => columns.map((c) => cell(r[c])).join(","))].join("\n")}\n`;
}

function print(est: EstimateResult | CostEstimate, json?: boolean): void {
  if (json) printJson(est);
  else process.stdout.write(`${formatEstimate(est)}\n`);
}

const usd = (n: number) => `$${n.toFixed(n >= 100 ? 2 : 4)}`;
const num = (n: number) => Math.round(n).toLocaleString("en-US");
const span = (r: Range, f: (n: number) => string) => (Math.abs(r.high - r.low) < 1e-9 ? f(r.mid) : `${f(r.mid)} (${f(r.low)}–${f(r.high)})`);

/** The human report of an estimate. */
export function formatEstimate(est: EstimateResult | CostEstimate): string {
  const lines = [`estimate ${est.pipeline}: ${est.source}, ${num(est.items)} items${est.historyRunId ? `; pass rates from run ${est.historyRunId}` : ""}`];
  if ("sample" in est && est.sample) lines.push(`sample run ${est.sample.runId}: ${num(est.sample.items)} items, paid ${usd(est.sample.costUsd)}`);
  lines.push("", `${"stage".padEnd(12)} ${"items reaching it".padEnd(24)} ${"calls to pay".padEnd(24)} ${"reused".padStart(7)} ${"cached".padStart(7)}  cost`);
  for (const s of est.stages) {
    const model = s.model !== undefined;
    lines.push(
      `${s.id.padEnd(12)} ${span(s.reach, num).padEnd(24)} ${(model ? span(s.calls, num) : "-").padEnd(24)} ${String(s.reused).padStart(7)} ${String(model ? s.cached + s.duplicates : "-").padStart(7)}  ${model ? span(s.costUsd, usd) : "free"}`,
    );
  }
  lines.push("", `total        ${usd(est.costUsd.mid)}   range ${usd(est.costUsd.low)} – ${usd(est.costUsd.high)}`);
  const by = est.deadlineAt ? `the deadline (${est.deadlineAt})` : "a deadline";
  const batchable = est.stages.some((s) => s.batchAllowed);
  if (batchable) lines.push(`plans        ${usd(est.plans.realtimeUsd)} all realtime, ${usd(est.plans.batchUsd)} with batch where a stage and ${by} allow it`);
  else if (est.deadlineAt) lines.push(`plans        ${usd(est.plans.realtimeUsd)} all realtime; no stage can go by batch before ${by}`);
  lines.push(`saved        ${usd(est.savedUsd.reuse)} by stored outputs (reuse rule), ${usd(est.savedUsd.cache)} by the request cache and identical requests`);
  for (const s of est.stages.filter((x) => x.model !== undefined)) {
    const price = s.price ? `$${s.price.input}/$${s.price.output} per 1M tokens in/out (${s.price.asOf}), batch x${s.price.batchFactor}` : "no price";
    const mode = s.mode!.low === s.mode!.high ? s.mode!.mid : `${s.mode!.mid} (${s.mode!.low} at the low end, ${s.mode!.high} at the high end)`;
    lines.push("", `${s.id}: ${s.model}, ${price}; priced ${mode}: realtime ${usd(s.realtimeUsd)}, batch ${usd(s.batchUsd)}`);
    lines.push(`  tokens in ${span(s.inputTokens, num)}, out ${span(s.outputTokens, num)}`);
    if (s.mode!.auto) lines.push(`  auto chooses ${s.mode!.auto.mode}: ${s.mode!.auto.why}`);
    for (const b of s.basis) lines.push(`  ${b}`);
  }
  if (est.notes.length) lines.push("", ...est.notes.map((n) => `note: ${n}`));
  return lines.join("\n");
}

export function estimateCommand(): Command {
  return new Command("estimate")
    .argument("<pipeline>", "pipeline id (pipelines/<id>.ts) or path to a pipeline file")
    .option("-i, --input <file>", "CSV or JSONL file of items (a pipeline reading a table or query: default the rows past its cursor; a glob: the files not read yet)")
    .option("--sample <n>", "first run a reproducible sample of n items for real (recorded like any run) and estimate from its answers")
    .option("--seed <s>", "sample seed (the same seed picks the same items)", "sluice")
    .option("--deadline <duration>", "price `auto` stages as a run with this deadline from now would choose (6h, 90m): both plans, and the choice per stage", parseDeadline)
    .option("--json", "print the estimate as one JSON object")
    .action(async (pipeline: string, opts: { input?: string; sample?: string; seed: string; deadline?: string; json?: boolean }) => {
      const sample = opts.sample === undefined ? undefined : parsePositiveInt(opts.sample, "--sample");
      await estimateCli({ pipeline, input: opts.input, sample, seed: opts.seed, deadline: opts.deadline, json: opts.json });
    });
}
