import { randomBytes } from "node:crypto";
import pLimit from "p-limit";
import { versionParts } from "../core/define.ts";
import { errorMessage, SluiceError } from "../core/errors.ts";
import { hashValue, sha256 } from "../core/hash.ts";
import { isLlmStage, type LlmStage, type PipelineDef, type StageDef, type StageInput } from "../core/types.ts";
import { DEFAULT_OPTIONS, silentLogger, type EngineOptions, type ProviderSet, type RunContext, type StagePlan } from "../engine/context.ts";
import { loadInputs, type LoadedInput } from "../engine/inputs.ts";
import { buildRequest, callLlm, checkCompletion, customIdFor, endpointOf, providerNameOf, requestHash } from "../engine/llm-call.ts";
import { planStages } from "../engine/plan.ts";
import type { CompletionResult } from "../providers/types.ts";
import { cacheResponse, cachedResponses } from "../store/cache.ts";
import type { Database } from "../store/database.ts";
import { itemsReachingStage, latestRunReachingStage, versionOutputsFor, workOutputsWithCost } from "../store/reports.ts";
import type { RunRow } from "../store/runs.ts";
import { recordOutsideAttempts } from "../store/spend.ts";
import type { ChangedItem, ItemAtStage } from "./diff.ts";
import { labelledItems } from "../store/reviews.ts";
import { agreementWithPeople, enumFields, humanLabels, labelsDiffer, labelTable, type HumanAgreement, type LabelTable } from "./labels.ts";

/**
 * An evaluation slice: run a stage's current definition on a reproducible
 * sample of the items that reached it in the last run, and compare with what
 * that run used. Nothing is committed and no run is recorded: the writes are
 * to `request_cache` (a provider answer is paid for once, so a rerun of the
 * stage afterwards gets the sampled items for free) and to `attempts` (what
 * the calls cost, under the comparison's own `cmp_` id, for `sluice cost`).
 * Reading earlier outputs of the current version (reuse rule) or the request
 * cache costs nothing.
 */

export interface CompareRequest {
  stage: string;
  /** Sample size. */
  sample: number;
  /** Seed of the sample order; the same seed over the same run picks the same items. Default "sluice". */
  seed?: string;
  /** The run to compare against; default: the latest finished run in which items reached the stage. */
  from?: string;
  /** Sample only among items people labelled in review (see `sluice labels`). */
  labelled?: boolean;
}

export interface CompareSide {
  version: string;
  /** Items of the sample with an output on this side. */
  items: number;
  costUsd: number;
  /** Cost of producing one output of this version, averaged over the sample (reused outputs at what they first cost). */
  costPerItemUsd: number;
}

export interface CompareResult {
  pipeline: string;
  stage: string;
  baseRunId: string;
  seed: string;
  /** Items that reached the stage in the base run, and how many were sampled. */
  reached: number;
  sampled: number;
  /** Sampled items with an output on both sides, and how many of those outputs are equal. */
  agreement: { compared: number; equal: number; rate: number };
  /** For classify-like stages: label agreement per enum field. */
  labels?: LabelTable[];
  /**
   * For classify-like stages, where people labelled sampled items in review:
   * how often each side's labels are theirs, per field and per label.
   */
  people?: { labelled: number; before: HumanAgreement[]; after: HumanAgreement[] };
  /** Sampled items the current gate keeps out, and those the current definition failed on. */
  gatedOutNow: number;
  failedNow: number;
  /** Every sampled item whose output or status differs: those with a changed label first, then by id. */
  changed: ChangedItem[];
  before: CompareSide;
  after: CompareSide & { providerCalls: number; reused: number; spentUsd: number };
  /** The id this comparison's paid calls are recorded under in `attempts` (`sluice cost --by run`). */
  recordedAs: string;
}

export interface CompareOptions {
  db: Database;
  pipeline: PipelineDef;
  providers: ProviderSet;
  options?: Partial<EngineOptions>;
  signal?: AbortSignal;
}

/**
 * Sample order: a seeded hash of the item id, so the sample does not depend on
 * load order, and a larger sample with the same seed contains the smaller one.
 *
 * @example
 * sampleItems(["T-1", "T-2", "T-3"], 2, "seed"); // the same two ids every time
 */
export function sampleItems(itemIds: string[], n: number, seed: string): string[] {
  return itemIds
    .map((id) => ({ id, key: sha256(`${seed}\u0000${id}`) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .slice(0, n)
    .map((x) => x.id)
    .sort();
}

async function baseRunFor(db: Database, pipelineId: string, stageId: string, from?: string): Promise<RunRow> {
  const run = await latestRunReachingStage(db, pipelineId, stageId, from);
  if (run) return run;
  throw new SluiceError(from ? `no item reached stage ${stageId} in run ${from} of ${pipelineId}` : `no finished run of ${pipelineId} in which items reached stage ${stageId}`);
}

type Outcome = { itemId: string; after: ItemAtStage | null; costUsd: number; spentUsd: number; calls: number; reused: boolean; failed: boolean };

/**
 * Run the current definition of one stage on a seeded sample of the items that
 * reached it in the last run, and report agreement with that run's outputs,
 * the changed items, and cost per item of both versions.
 *
 * @example
 * const result = await compareStage({ db, pipeline, providers }, { stage: "extract", sample: 50, seed: "1" });
 * console.log(result.agreement.rate, result.before.costPerItemUsd, result.after.costPerItemUsd);
 */
export async function compareStage(opts: CompareOptions, request: CompareRequest): Promise<CompareResult> {
  const { db, pipeline } = opts;
  const plan = planStages(pipeline);
  const current = plan.find((s) => s.id === request.stage);
  if (!current) throw new SluiceError(`pipeline ${pipeline.id} has no stage "${request.stage}" (stages: ${plan.map((s) => s.id).join(", ")})`);
  const def = pipeline.stages[current.index]!;
  if (def.kind === "commit") throw new SluiceError(`stage ${def.id} is a commit: it writes the target and has nothing to compare; compare the stage before it`);
  const base = await baseRunFor(db, pipeline.id, def.id, request.from);
  const seed = request.seed ?? "sluice";

  // What the stage reads, located in the base run's plan (stages may have been added since).
  const baseIndex = new Map(base.stages.map((s) => [s.id, s.index]));
  const reads = current.reads.map((i) => {
    const id = plan[i]!.id;
    const at = baseIndex.get(id);
    if (at === undefined) throw new SluiceError(`stage ${def.id} reads ${id}, which run ${base.id} did not have; run the pipeline first`);
    return at;
  });
  const stage: StagePlan = { ...current, index: baseIndex.get(def.id) ?? current.index, reads };
  const beforeVersion = base.stages.find((s) => s.id === def.id)?.version ?? "";

  const fields = enumFields(def.kind, versionParts(def));
  const people = fields.length ? humanLabels(await labelledItems(db, pipeline.id), def.id, fields) : new Map<string, Record<string, string>>();
  let reached = await itemsReachingStage(db, base.id, def.id);
  if (request.labelled) {
    reached = reached.filter((id) => people.has(id));
    if (reached.length === 0) throw new SluiceError(`no item that reached ${def.id} in run ${base.id} was labelled in review (sluice review, then sluice labels export to see them)`);
  }
  const ids = sampleItems(reached, request.sample, seed);

  const beforeRows = await workOutputsWithCost(db, base.id, def.id, ids);
  const before = new Map(beforeRows.map((r) => [r.item_id, { status: r.status, output: r.output ?? null, costUsd: Number(r.cost_usd ?? 0), has: r.cost_usd !== null }]));

  // A context over the base run, for reading inputs and calling providers; nothing is written through it.
  const ctx: RunContext = {
    db,
    pipeline,
    providers: opts.providers,
    runId: base.id,
    // The id this comparison's paid calls are recorded under in `attempts`.
    workerId: `cmp_${Date.now().toString(36)}${randomBytes(4).toString("hex")}`,
    plan,
    options: { ...DEFAULT_OPTIONS, ...opts.options },
    logger: silentLogger,
    signal: opts.signal,
  };
  const inputs = await loadInputs(ctx, stage, ids);
  const existing = await currentOutputs(db, pipeline.id, def.id, current.version, [...inputs.values()]);
  const limit = pLimit(ctx.options.concurrency);
  const outcomes = await Promise.all(ids.map((itemId) => evaluate(ctx, stage, def, inputs.get(itemId), itemId, existing, limit)));

  const afterMap = new Map(outcomes.filter((o) => o.after).map((o) => [o.itemId, o.after!]));
  let compared = 0;
  let equal = 0;
  const changed: ChangedItem[] = [];
  for (const o of outcomes) {
    const b = before.get(o.itemId);
    const a = o.after;
    const bothOutputs = b?.output != null && a?.output != null;
    const same = bothOutputs ? hashValue(b!.output, 32) === hashValue(a!.output, 32) : b?.output == null && a?.output == null;
    if (bothOutputs) {
      compared++;
      if (same) equal++;
    }
    if (!same || b?.status !== a?.status) changed.push({ itemId: o.itemId, before: b ? { status: b.status, output: b.output } : null, after: a });
  }
  // Label changes first: for a classifier they matter more than a moved confidence.
  const rank = (c: ChangedItem) => (fields.length && labelsDiffer(fields, c.before?.output, c.after?.output) ? 0 : 1);
  changed.sort((x, y) => rank(x) - rank(y) || x.itemId.localeCompare(y.itemId));
  const sampledPeople = new Map(ids.filter((id) => people.has(id)).map((id) => [id, people.get(id)!]));
  const withOutputs = outcomes.filter((o) => o.after?.output != null);
  const beforeWith = [...before.values()].filter((b) => b.has);
  const round = (n: number) => Math.round(n * 1e8) / 1e8;
  const beforeCost = beforeWith.reduce((s, b) => s + b.costUsd, 0);
  const afterCost = withOutputs.reduce((s, o) => s + o.costUsd, 0);
  return {
    pipeline: pipeline.id,
    stage: def.id,
    baseRunId: base.id,
    seed,
    reached: reached.length,
    sampled: ids.length,
    agreement: { compared, equal, rate: compared ? equal / compared : 1 },
    labels: fields.length ? labelTable(fields, before, afterMap) : undefined,
    people: sampledPeople.size ? { labelled: sampledPeople.size, before: agreementWithPeople(fields, sampledPeople, before), after: agreementWithPeople(fields, sampledPeople, afterMap) } : undefined,
    gatedOutNow: outcomes.filter((o) => o.after?.status === "gated_out").length,
    failedNow: outcomes.filter((o) => o.failed).length,
    changed,
    before: { version: beforeVersion, items: beforeWith.length, costUsd: round(beforeCost), costPerItemUsd: round(beforeWith.length ? beforeCost / beforeWith.length : 0) },
    after: {
      version: current.version,
      items: withOutputs.length,
      costUsd: round(afterCost),
      costPerItemUsd: round(withOutputs.length ? afterCost / withOutputs.length : 0),
      providerCalls: outcomes.reduce((s, o) => s + o.calls, 0),
      reused: outcomes.filter((o) => o.reused).length,
      spentUsd: round(outcomes.reduce((s, o) => s + o.spentUsd, 0)),
    },
    recordedAs: ctx.workerId,
  };
}

/** Outputs the current version already has for these exact inputs (the reuse rule), with what they cost. */
async function currentOutputs(db: Database, pipelineId: string, stageId: string, version: string, inputs: LoadedInput[]) {
  const found = new Map<string, { status: string; output: unknown; costUsd: number }>();
  if (inputs.length === 0) return found;
  const wanted = new Map(inputs.map((i) => [i.input.itemId, i.inputHash]));
  const rows = await versionOutputsFor(db, { pipelineId, stageId, version, itemIds: [...wanted.keys()] });
  for (const r of rows) if (wanted.get(r.item_id) === r.input_hash) found.set(r.item_id, { status: r.status, output: r.output ?? null, costUsd: Number(r.cost_usd) });
  return found;
}

async function evaluate(ctx: RunContext, stage: StagePlan, def: StageDef, loaded: LoadedInput | undefined, itemId: string, existing: Map<string, { status: string; output: unknown; costUsd: number }>, limit: ReturnType<typeof pLimit>): Promise<Outcome> {
  const none = { costUsd: 0, spentUsd: 0, calls: 0, reused: false, failed: false };
  if (!loaded) return { itemId, after: null, ...none, failed: true };
  try {
    if (def.when && !def.when(loaded.input)) return { itemId, after: { status: "gated_out", output: null }, ...none };
  } catch (err) {
    return { itemId, after: { status: "failed_terminal", output: null, error: `gate threw: ${errorMessage(err)}` }, ...none, failed: true };
  }
  const hit = existing.get(itemId);
  if (hit) return { itemId, after: { status: hit.status, output: hit.output }, ...none, costUsd: hit.costUsd, reused: true };
  if (!isLlmStage(def)) return evaluateLocal(def, loaded.input, itemId);
  return evaluateLlm(ctx, stage, def, loaded.input, itemId, limit);
}

async function evaluateLocal(def: StageDef, input: StageInput, itemId: string): Promise<Outcome> {
  const none = { costUsd: 0, spentUsd: 0, calls: 0, reused: false };
  try {
    const value = await (def as { run: (i: StageInput) => unknown }).run(input);
    const verdict = def.kind === "validate" ? (value as { status?: string }).status : undefined;
    const status = def.kind === "validate" ? (verdict === "valid" ? "validated" : verdict === "review" ? "needs_review" : "failed_terminal") : def.kind === "filter" && (value as { keep?: boolean })?.keep === false ? "gated_out" : "succeeded_unvalidated";
    return { itemId, after: { status, output: value ?? null }, ...none, failed: status === "failed_terminal" };
  } catch (err) {
    return { itemId, after: { status: "failed_terminal", output: null, error: errorMessage(err) }, ...none, failed: true };
  }
}

async function evaluateLlm(ctx: RunContext, stage: StagePlan, def: LlmStage, input: StageInput, itemId: string, limit: ReturnType<typeof pLimit>): Promise<Outcome> {
  const providerName = providerNameOf(ctx, def);
  const request = buildRequest(def, input, customIdFor(stage, itemId));
  const hash = requestHash(endpointOf(ctx, providerName), request);
  const hit = (await cachedResponses<CompletionResult>(ctx.db, [hash])).get(hash);
  const checked = hit && checkCompletion(def, input, hit);
  if (hit && checked && checked.ok) {
    const costUsd = ctx.providers.cost(def.model, hit.usage, "realtime");
    return { itemId, after: { status: "succeeded_unvalidated", output: checked.value }, costUsd, spentUsd: 0, calls: 0, reused: true, failed: false };
  }
  const outcome = await callLlm(ctx, def, ctx.providers.get(providerName), providerName, request, input, hash, (fn) => limit(fn));
  // Paid like a run's calls, so recorded like them: `sluice cost` counts them under the compare's own id.
  await recordOutsideAttempts(ctx.db, { callerId: ctx.workerId, pipeline: ctx.pipeline.id, stageId: def.id, itemId }, outcome.attempts);
  const spent = outcome.attempts.reduce((s, a) => s + a.costUsd, 0);
  if (outcome.status !== "succeeded") {
    return { itemId, after: { status: outcome.status, output: null, error: outcome.message }, costUsd: spent, spentUsd: spent, calls: outcome.attempts.length, reused: false, failed: true };
  }
  await cacheResponse(ctx.db, { requestHash: hash, provider: providerName, model: def.model, response: outcome.response });
  return { itemId, after: { status: "succeeded_unvalidated", output: outcome.value }, costUsd: spent, spentUsd: spent, calls: outcome.attempts.length, reused: false, failed: false };
}
