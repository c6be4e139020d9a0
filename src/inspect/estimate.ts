import { countTokens } from "../core/tokens.ts";
import { frontiersOf } from "../core/dag.ts";
import { hashValue } from "../core/hash.ts";
import { advances, type ItemStatus } from "../core/status.ts";
import { isLlmStage, type LlmStage, type PipelineDef, type StageDef } from "../core/types.ts";
import { computeLocal, gate } from "../engine/compute.ts";
import { DEFAULT_OPTIONS, silentLogger, type EngineOptions, type ProviderSet, type RunContext } from "../engine/context.ts";
import { stageInput, type ChunkItem } from "../engine/inputs.ts";
import { buildRequest, checkCompletion, customIdFor, endpointOf, providerNameOf, requestHash } from "../engine/llm-call.ts";
import { planStages } from "../engine/plan.ts";
import { estimateInputTokens } from "../providers/limits/estimate.ts";
import { costBreakdown, priceOf } from "../providers/prices.ts";
import type { Usage } from "../providers/types.ts";
import type { Database } from "../store/database.ts";
import { answerStats, gateOutcomes } from "../store/spend.ts";
import { learnGateOdds } from "./gate-odds.ts";
/**
 * What a run would cost before it is paid for: `sluice estimate`, and
 * `--dry-run` on `run` and `rerun`. Nothing is written.
 *
 * Each item is walked through the stages as far as what it would meet there
 * is known without a model call: function stages (filters, validators, the
 * commit row) are pure and computed for real; the reuse rule and the request
 * cache are checked against the store exactly as the engine would, so an
 * unchanged rerun comes to $0. Once an item needs a call, the answer is
 * unknown: the call is priced (input tokens counted on the real request, with
 * the tokenizer the provider layer uses; output tokens from answers observed
 * in the store), and the stages after it are reached with the pass rates of
 * the pipeline's last finished run. Every uncertain quantity (pass rates,
 * output tokens, repairs, the tokenizer's fit, realtime or batch) gives the
 * range its low and high ends; the midpoint is the best guess.
 */

import { parseDuration } from "../core/duration.ts";
import { attemptsPerCall, cachedIn, modeOf, outputTokens, storedFor, TOKENIZER_MARGIN, tokenizerFit } from "./estimate-answers.ts";
import { describeOdds, GATE_EXAMPLES, gateSelection, historyOf, itemRate } from "./estimate-gates.ts";
import { describeRate, EXACT, fmtRange, rate, sumRange, times, zero, type PriceMode, type Range } from "./estimate-ranges.ts";

export type { PriceMode, Range } from "./estimate-ranges.ts";

export interface StageEstimate {
  id: string;
  kind: StageDef["kind"];
  /** Items expected to reach the stage and pass its gate. */
  reach: Range;
  /** Items whose stored output (same stage version, same input) is their result: free. */
  reused: number;
  /** Items the request cache answers: free. */
  cached: number;
  /** Items whose request is identical to another item's in this input: paid once. */
  duplicates: number;
  /** Model stages: requests to pay for, tokens, price. */
  model?: string;
  calls: Range;
  inputTokens: Range;
  outputTokens: Range;
  /**
   * How the calls are priced at each end of the range; for an `auto` stage,
   * what the engine would choose (by the calls in a chunk, the deadline and
   * the provider's recent batch turnaround) and why, as a run records it.
   */
  mode?: { low: PriceMode; mid: PriceMode; high: PriceMode; auto?: { mode: PriceMode; why: string } };
  /** USD per million tokens, from `src/providers/prices.ts`; null when the model has no price (counted at $0). */
  price?: { input: number; output: number; batchFactor: number; asOf: string } | null;
  costUsd: Range;
  /** The midpoint at the realtime and at the batch price. */
  realtimeUsd: number;
  batchUsd: number;
  /** The stage may use a batch API (`batch`, or `auto` on a provider with one) and the deadline, if any, leaves a batch room. */
  batchAllowed?: boolean;
  /** What the reuse rule and the request cache (with identical requests) save, at this stage's price. */
  savedUsd: { reuse: number; cache: number };
  /** Where the figures come from, in words. */
  basis: string[];
}

export interface CostEstimate {
  pipeline: string;
  /** What is estimated: the input file, or the rerun. */
  source: string;
  items: number;
  /** The finished run whose pass rates were used, if any. */
  historyRunId: string | null;
  stages: StageEstimate[];
  costUsd: Range;
  /**
   * The midpoint under each plan: every model stage realtime, and every stage
   * that may use a batch API (`batch` or `auto`, on a provider that has one)
   * by batch where the deadline leaves a batch room. Which one an `auto` stage
   * takes is in its `mode.auto` (see `engine/deadline.ts`).
   */
  plans: { realtimeUsd: number; batchUsd: number };
  /** The deadline the estimate assumed (`--deadline`, from now), if any. */
  deadlineAt?: string;
  savedUsd: { reuse: number; cache: number };
  notes: string[];
}

export interface EstimateItem {
  itemId: string;
  item: unknown;
  contentHash: string;
}

export interface EstimateRequest {
  /** Shown as what is estimated. */
  source: string;
  items: readonly EstimateItem[];
  /** Stop after this stage index (a rerun with `--only`). */
  stopAfter?: number;
}

export interface EstimateOptions {
  db: Database;
  pipeline: PipelineDef;
  /** The providers a run would use: their endpoints are part of input and request hashes, and say who has a batch API. */
  providers: ProviderSet;
  options?: Partial<EngineOptions>;
  /** Width of the range in standard errors. Default 1.96. */
  z?: number;
  /** A run's deadline from now (`--deadline 6h`): `auto` stages are priced as the engine would choose under it. */
  deadline?: string;
}

/** Answers read from the store for output-token statistics. */
const STATS_LIMIT = 5000;

/**
 * Estimate what running `request.items` through the pipeline would cost.
 *
 * @example
 * const est = await estimateCost({ db, pipeline, providers }, { source: "tickets.csv", items });
 * console.log(est.costUsd.low, est.costUsd.high);
 */
export async function estimateCost(opts: EstimateOptions, request: EstimateRequest): Promise<CostEstimate> {
  const { db, pipeline } = opts;
  const z = opts.z ?? 1.96;
  const plan = planStages(pipeline);
  const now = new Date();
  const ctx: RunContext = {
    db,
    pipeline,
    providers: opts.providers,
    runId: "estimate",
    workerId: "estimate",
    plan,
    options: { ...DEFAULT_OPTIONS, ...opts.options },
    logger: silentLogger,
    runStartedAt: now,
    ...(opts.deadline !== undefined ? { deadlineAt: new Date(now.getTime() + parseDuration(opts.deadline, "--deadline")) } : {}),
  };
  const history = await historyOf(db, pipeline, plan);
  const notes: string[] = [];
  if (!history.runId) notes.push(`no finished run of ${pipeline.id} in the store: pass rates and output tokens are guesses; \`--sample N\` runs N items first for a tighter range`);

  let known: { itemId: string; chunk: ChunkItem }[] = request.items.map((i) => ({ itemId: i.itemId, chunk: { item: i.item, contentHash: i.contentHash, outputs: {}, hashes: {} } }));
  let unknown: { itemId: string; chunk: ChunkItem; p: Range }[] = [];
  const stages: StageEstimate[] = [];
  /** Model stages that may go by batch: `batch` or `auto`, on a provider with a batch API. */
  const batchable = new Set<string>();
  const last = Math.min(plan.length - 1, request.stopAfter ?? plan.length - 1);

  // What went on from each stage; a stage starts from its frontier's (the stage before it, in a list of stages).
  const all = known;
  const passedOn = new Map<number, { known: typeof known; unknown: typeof unknown }>();
  const frontiers = frontiersOf(plan.map((s) => s.reads));
  for (const stage of plan.slice(0, last + 1)) {
    ({ known, unknown } = arrivals(frontiers[stage.index]!, passedOn, all));
    const def = pipeline.stages[stage.index]!;
    const flow = history.flow.get(stage.id);
    const g = def.when ? rate(flow?.handled, flow?.rows, z) : EXACT;
    const a = rate(flow?.advanced, flow?.handled, z, isLlmStage(def) ? "llm" : "function");
    const est: StageEstimate = {
      id: stage.id, kind: def.kind, reach: { low: 0, mid: 0, high: 0 }, reused: 0, cached: 0, duplicates: 0,
      calls: zero(), inputTokens: zero(), outputTokens: zero(), costUsd: zero(), realtimeUsd: 0, batchUsd: 0, savedUsd: { reuse: 0, cache: 0 }, basis: [],
    };
    stages.push(est);

    // Items that arrive for certain: their gate is evaluated for real.
    const arriving: { itemId: string; chunk: ChunkItem; inputHash: string; input: ReturnType<typeof stageInput>["input"] }[] = [];
    // For a gated model stage: request sizes of the known items before and after the gate (see `gateSelection`).
    const sizes: { tokens: number; passed: boolean }[] = [];
    const measure = isLlmStage(def) && def.when !== undefined && unknown.length > 0;
    for (const k of known) {
      const loaded = stageInput(ctx, stage, k.itemId, k.chunk);
      const tokens = measure ? estimateInputTokens(buildRequest(def as LlmStage, loaded.input, customIdFor(stage, k.itemId))) : 0;
      const stopped = gate(def, k.itemId, loaded.input);
      if (measure) sizes.push({ tokens, passed: !stopped });
      if (stopped) continue;
      arriving.push({ ...k, inputHash: loaded.inputHash, input: loaded.input });
    }
    const stored = await storedFor(db, pipeline.id, stage, arriving.map((x) => x.itemId));
    const nextKnown: typeof known = [];
    const nextUnknown: typeof unknown = [];
    const goOn = (x: { itemId: string; chunk: ChunkItem }, status: ItemStatus, value: unknown, hash: string) => {
      if (!advances(status)) return;
      nextKnown.push({ itemId: x.itemId, chunk: { ...x.chunk, outputs: { ...x.chunk.outputs, [stage.id]: value }, hashes: { ...x.chunk.hashes, [stage.id]: hash } } });
    };
    const toCompute: typeof arriving = [];
    for (const x of arriving) {
      const hit = stored.get(x.itemId)?.find((o) => o.inputHash === x.inputHash);
      if (hit) {
        est.reused++;
        goOn(x, hit.status as ItemStatus, hit.value, hit.hash);
      } else toCompute.push(x);
    }

    // Items reached with a probability only: their upstream answer is not known yet.
    // A gate's odds are the item's own where an earlier run shows items like it (see `gate-odds.ts`).
    const odds = def.when && unknown.length && flow?.runId && g.n ? learnGateOdds(await gateOutcomes(db, flow.runId, stage.id, GATE_EXAMPLES)) : undefined;
    const reachUnknown = unknown.map((u) => ({ ...u, q: times(u.p, odds ? itemRate(g, odds, u.chunk.item) : g) }));
    const expected = sumRange(reachUnknown.map((u) => u.q));
    const spread = z * Math.sqrt(reachUnknown.reduce((s, u) => s + u.q.mid * (1 - u.q.mid), 0));
    // No more can reach the stage than arrive at it.
    est.reach = { low: arriving.length + Math.max(0, expected.low - spread), mid: arriving.length + expected.mid, high: arriving.length + Math.min(reachUnknown.length, expected.high + spread) };

    if (!isLlmStage(def)) {
      for (const x of toCompute) {
        const result = await computeLocal(def, { input: x.input, inputHash: x.inputHash });
        if (result.output) goOn(x, result.status, result.output.value, result.output.hash);
      }
      for (const u of reachUnknown) nextUnknown.push({ itemId: u.itemId, chunk: u.chunk, p: times(u.q, a) });
      if (def.when && unknown.length) est.basis.push(describeRate("gate pass rate", g, history.flow.get(stage.id)?.runId), ...describeOdds(odds, reachUnknown, g));
      passedOn.set(stage.index, { known: nextKnown, unknown: nextUnknown });
      continue;
    }

    // A model stage: the request cache, identical requests, then the calls to pay for.
    const providerName = providerNameOf(ctx, def);
    const endpoint = endpointOf(ctx, providerName);
    const requests = toCompute.map((x) => {
      const req = buildRequest(def, x.input, customIdFor(stage, x.itemId));
      return { ...x, req, hash: requestHash(endpoint, req) };
    });
    const cache = await cachedIn(db, requests.map((r) => r.hash));
    const paid = new Map<string, { tokens: number }>();
    const savedLater: { usage: Usage; kind: "reuse" | "cache" }[] = [];
    for (const r of requests) {
      const hit = cache.get(r.hash);
      const checked = hit && checkCompletion(def, r.input, hit);
      if (hit && checked && (checked.ok || checked.threw)) {
        est.cached++;
        savedLater.push({ usage: hit.usage, kind: "cache" });
        if (checked.ok) goOn(r, "succeeded_unvalidated", checked.value, hashValue(checked.value ?? null, 32));
        continue;
      }
      const first = paid.get(r.hash);
      const tokens = first?.tokens ?? estimateInputTokens(r.req);
      if (first) {
        est.duplicates++;
        savedLater.push({ usage: { inputTokens: tokens, outputTokens: NaN }, kind: "cache" });
      } else paid.set(r.hash, { tokens });
      nextUnknown.push({ itemId: r.itemId, chunk: r.chunk, p: a });
    }

    // Requests of items reached with a probability: rendered with what is known of them.
    let weighted = 0;
    let weight = 0;
    for (const u of reachUnknown) {
      const input = stageInput(ctx, stage, u.itemId, u.chunk).input;
      const tokens = estimateInputTokens(buildRequest(def, input, customIdFor(stage, u.itemId)));
      weighted += u.q.mid * tokens;
      weight += u.q.mid;
      nextUnknown.push({ itemId: u.itemId, chunk: u.chunk, p: times(u.q, a) });
    }
    const meanUnknownTokens = weight > 0 ? weighted / weight : 0;

    // How the tokens counted here compare with what the provider billed for the same requests (reused ones included).
    const computing = new Set(toCompute.map((x) => x.itemId));
    const reusedRequests = arriving.filter((x) => !computing.has(x.itemId)).map((x) => {
      const req = buildRequest(def, x.input, customIdFor(stage, x.itemId));
      return { hash: requestHash(endpoint, req), tokens: estimateInputTokens(req), output: stored.get(x.itemId)?.find((o) => o.inputHash === x.inputHash)?.value };
    });
    const calibration = await tokenizerFit(db, [...reusedRequests, ...[...paid].map(([hash, p]) => ({ hash, tokens: p.tokens }))], z);
    for (const r of reusedRequests) savedLater.push({ usage: { inputTokens: r.tokens * calibration.mid, outputTokens: countTokens(JSON.stringify(r.output ?? null)) }, kind: "reuse" });

    const stats = await answerStats(db, { pipeline: pipeline.id, stageId: stage.id, model: def.model, limit: STATS_LIMIT });
    const out = outputTokens(def, stats, z);
    const tries = attemptsPerCall(stats, z);
    const knownCalls = paid.size;
    const knownTokens = [...paid.values()].reduce((s, p) => s + p.tokens, 0);
    est.model = def.model;
    est.calls = { low: knownCalls + Math.max(0, expected.low - spread), mid: knownCalls + expected.mid, high: knownCalls + Math.min(reachUnknown.length, expected.high + spread) };
    // With odds per item, the requests the gate is likely to let through already weigh more in the mean above:
    // the selection measured on known items is then not applied again, only its uncertainty is kept.
    const measured = gateSelection(def, sizes, unknown.length > 0, z);
    const selection = odds ? { low: measured.low / measured.mid, mid: 1, high: measured.high / measured.mid } : measured;
    const inputAt = (calls: number, fit: number, t: number, sel: number) => (knownTokens + (calls - knownCalls) * meanUnknownTokens * sel) * fit * t;
    est.inputTokens = {
      low: inputAt(est.calls.low, calibration.low, tries.low, selection.low),
      mid: inputAt(est.calls.mid, calibration.mid, tries.mid, selection.mid),
      high: inputAt(est.calls.high, calibration.high, tries.high, selection.high),
    };
    const outSpread = (calls: number) => z * stats.sd_output * Math.sqrt(calls);
    est.outputTokens = {
      low: Math.max(0, est.calls.low * tries.low * out.low - outSpread(est.calls.low)),
      mid: est.calls.mid * tries.mid * out.mid,
      high: est.calls.high * tries.high * out.high + outSpread(est.calls.high),
    };

    const mode = await modeOf(ctx, def, providerName, endpoint, est.calls, est.reach);
    est.mode = { low: mode.low, mid: mode.mid, high: mode.high, ...(mode.auto ? { auto: mode.auto } : {}) };
    est.batchAllowed = mode.deadlineAllows;
    if (mode.deadlineAllows) batchable.add(stage.id);
    const p = priceOf(def.model);
    est.price = p ? { input: p.input, output: p.output, batchFactor: p.batchFactor ?? 0.5, asOf: p.asOf } : null;
    if (!p) notes.push(`no price for model ${def.model}: stage ${stage.id} is counted at $0`);
    const usd = (i: number, o: number, m: PriceMode) => costBreakdown(def.model, { inputTokens: i, outputTokens: o }, m).usd;
    est.costUsd = { low: usd(est.inputTokens.low, est.outputTokens.low, mode.low), mid: usd(est.inputTokens.mid, est.outputTokens.mid, mode.mid), high: usd(est.inputTokens.high, est.outputTokens.high, mode.high) };
    est.realtimeUsd = usd(est.inputTokens.mid, est.outputTokens.mid, "realtime");
    est.batchUsd = usd(est.inputTokens.mid, est.outputTokens.mid, "batch");
    for (const s of savedLater) {
      const usage = Number.isNaN(s.usage.outputTokens) ? { inputTokens: s.usage.inputTokens * calibration.mid, outputTokens: out.mid } : s.usage;
      est.savedUsd[s.kind] += usd(usage.inputTokens, usage.outputTokens, mode.mid);
    }

    est.basis.push(`${knownCalls} request${knownCalls === 1 ? "" : "s"} built and counted${unknown.length ? `, ${fmtRange(expected)} more expected after upstream answers` : ""}`);
    if (def.when && unknown.length) est.basis.push(describeRate("gate pass rate", g, flow?.runId), ...describeOdds(odds, reachUnknown, g));
    if (selection.basis) est.basis.push(selection.basis);
    est.basis.push(
      stats.answers
        ? `output tokens: ${out.mid.toFixed(1)} per answer on average over ${stats.answers} earlier answers (sd ${stats.sd_output.toFixed(1)})`
        : `output tokens: no earlier answers; between ${out.low} and ${out.high} (maxTokens) per answer`,
    );
    if (tries.mid > 1) est.basis.push(`paid attempts per item: ${tries.mid.toFixed(3)} (repairs), from earlier runs`);
    est.basis.push(calibration.pairs ? `token counts fitted to what the provider billed for ${calibration.pairs} identical requests (x${calibration.mid.toFixed(3)})` : `token counts ±${TOKENIZER_MARGIN * 100}% (no identical request billed before)`);
    passedOn.set(stage.index, { known: nextKnown, unknown: nextUnknown });
  }

  const costUsd = sumRange(stages.map((s) => s.costUsd));
  return {
    pipeline: pipeline.id,
    source: request.source,
    items: request.items.length,
    historyRunId: history.runId,
    stages,
    costUsd,
    plans: { realtimeUsd: stages.reduce((t, s) => t + s.realtimeUsd, 0), batchUsd: stages.reduce((t, s) => t + (batchable.has(s.id) ? s.batchUsd : s.realtimeUsd), 0) },
    savedUsd: { reuse: stages.reduce((s, x) => s + x.savedUsd.reuse, 0), cache: stages.reduce((s, x) => s + x.savedUsd.cache, 0) },
    notes,
    ...(ctx.deadlineAt ? { deadlineAt: ctx.deadlineAt.toISOString() } : {}),
  };
}


type Passed = { known: { itemId: string; chunk: ChunkItem }[]; unknown: { itemId: string; chunk: ChunkItem; p: Range }[] };

/**
 * The items that reach a stage: every item for a stage without dependencies,
 * else those one of its frontier stages passed on (see `core/dag.ts`). Where
 * branches meet, an item passed on for certain by one branch arrives for
 * certain, with the outputs of every branch that passed it on; one passed on
 * with a probability by several arrives with the chance that one did.
 */
function arrivals(frontier: readonly number[], passedOn: ReadonlyMap<number, Passed>, all: Passed["known"]): Passed {
  if (frontier.length === 0) return { known: all, unknown: [] };
  if (frontier.length === 1) return passedOn.get(frontier[0]!) ?? { known: [], unknown: [] };
  const known = new Map<string, { itemId: string; chunk: ChunkItem }>();
  const unknown = new Map<string, { itemId: string; chunk: ChunkItem; p: Range }>();
  for (const f of frontier) {
    const from = passedOn.get(f);
    for (const k of from?.known ?? []) {
      const had = known.get(k.itemId);
      known.set(k.itemId, had ? { itemId: k.itemId, chunk: { ...had.chunk, outputs: { ...had.chunk.outputs, ...k.chunk.outputs }, hashes: { ...had.chunk.hashes, ...k.chunk.hashes } } } : k);
    }
    for (const u of from?.unknown ?? []) {
      const had = unknown.get(u.itemId);
      const either = (a: number, b: number) => 1 - (1 - a) * (1 - b);
      unknown.set(u.itemId, had ? { ...had, p: { low: either(had.p.low, u.p.low), mid: either(had.p.mid, u.p.mid), high: either(had.p.high, u.p.high) } } : u);
    }
  }
  for (const id of known.keys()) unknown.delete(id);
  return { known: [...known.values()].sort((a, b) => (a.itemId < b.itemId ? -1 : a.itemId > b.itemId ? 1 : 0)), unknown: [...unknown.values()] };
}
