import type { Database } from "../store/database.ts";
import { itemAttempts, itemStages, paidByDimension, savedByDimension, type CostDimension, type CostFilter, type CostGrouping } from "../store/spend.ts";

/**
 * `sluice cost`: what was paid, grouped by pipeline, stage, run, day or
 * model, with what the batch API's discount, the reuse rule and the request
 * cache saved; and everything one item cost across runs.
 */

export const COST_DIMENSIONS: readonly CostDimension[] = ["pipeline", "stage", "run", "day", "model"];

export interface CostGroup {
  /** The group's key: `ticket-triage`, `ticket-triage/extract`, a run id, `2025-06-01`, `gpt-4o`. */
  key: string;
  pipeline?: string;
  stage?: string;
  runId?: string;
  day?: string;
  model?: string;
  calls: number;
  batchCalls: number;
  failedCalls: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
  /** The same usage at the realtime list price. */
  listCostUsd: number;
  saved: { batchUsd: number; reuseUsd: number; cacheUsd: number; reusedItems: number; cacheHits: number };
}

export interface CostReport {
  /** The dimension grouped by, or several joined by commas (`stage,model`). */
  by: string;
  filter: CostFilter;
  groups: CostGroup[];
  total: Omit<CostGroup, "key" | "pipeline" | "stage" | "runId" | "day" | "model">;
}

const round = (n: number) => Math.round(n * 1e8) / 1e8;

/**
 * Costs grouped by one dimension, or by several together (one group per
 * stage and model with `["stage", "model"]`), most expensive first.
 *
 * @example
 * const { groups, total } = await costReport(db, "stage", { pipeline: "ticket-triage" });
 * await costReport(db, ["stage", "model"]); // keys like "ticket-triage/extract · gpt-4o"
 */
export async function costReport(db: Database, by: CostGrouping, filter: CostFilter = {}): Promise<CostReport> {
  const dims: readonly CostDimension[] = typeof by === "string" ? [by] : [...new Set(by)];
  const [paid, saved] = await Promise.all([paidByDimension(db, dims, filter), savedByDimension(db, dims, filter)]);
  const groups = new Map<string, CostGroup>();
  const keyOf = (r: { pipeline: string | null; stage_id: string | null; run_id: string | null; day: string | null; model: string | null }) => {
    const part = (d: CostDimension) => (d === "pipeline" ? r.pipeline : d === "stage" ? `${r.pipeline}/${r.stage_id}` : d === "run" ? r.run_id : d === "day" ? r.day : r.model) ?? "(none)";
    const k = dims.map(part).join(" · ");
    let g = groups.get(k);
    if (!g) {
      g = { key: k, calls: 0, batchCalls: 0, failedCalls: 0, inputTokens: 0, outputTokens: 0, costUsd: 0, listCostUsd: 0, saved: { batchUsd: 0, reuseUsd: 0, cacheUsd: 0, reusedItems: 0, cacheHits: 0 } };
      // The store leaves a column null unless the rows are grouped by it (a stage or a run by its pipeline too).
      if (r.pipeline) g.pipeline = r.pipeline;
      if (r.stage_id) g.stage = r.stage_id;
      if (r.run_id) g.runId = r.run_id;
      if (r.day) g.day = r.day;
      if (r.model) g.model = r.model;
      groups.set(k, g);
    }
    return g;
  };
  for (const r of paid) {
    const g = keyOf(r);
    g.calls += r.calls;
    g.batchCalls += r.batch_calls;
    g.failedCalls += r.failed_calls;
    g.inputTokens += Number(r.input_tokens);
    g.outputTokens += Number(r.output_tokens);
    g.costUsd += r.cost;
    g.listCostUsd += r.list_cost;
    g.saved.batchUsd += r.batch_saved;
  }
  for (const r of saved) {
    const g = keyOf(r);
    g.saved.reusedItems += r.reused;
    g.saved.reuseUsd += r.reuse_saved;
    g.saved.cacheHits += r.cache_hits;
    g.saved.cacheUsd += r.cache_saved;
  }
  const list = [...groups.values()].map((g) => ({
    ...g,
    costUsd: round(g.costUsd),
    listCostUsd: round(g.listCostUsd),
    saved: { ...g.saved, batchUsd: round(g.saved.batchUsd), reuseUsd: round(g.saved.reuseUsd), cacheUsd: round(g.saved.cacheUsd) },
  }));
  list.sort((a, b) => b.costUsd - a.costUsd || a.key.localeCompare(b.key));
  const total = list.reduce(
    (t, g) => ({
      calls: t.calls + g.calls,
      batchCalls: t.batchCalls + g.batchCalls,
      failedCalls: t.failedCalls + g.failedCalls,
      inputTokens: t.inputTokens + g.inputTokens,
      outputTokens: t.outputTokens + g.outputTokens,
      costUsd: round(t.costUsd + g.costUsd),
      listCostUsd: round(t.listCostUsd + g.listCostUsd),
      saved: {
        batchUsd: round(t.saved.batchUsd + g.saved.batchUsd),
        reuseUsd: round(t.saved.reuseUsd + g.saved.reuseUsd),
        cacheUsd: round(t.saved.cacheUsd + g.saved.cacheUsd),
        reusedItems: t.saved.reusedItems + g.saved.reusedItems,
        cacheHits: t.saved.cacheHits + g.saved.cacheHits,
      },
    }),
    { calls: 0, batchCalls: 0, failedCalls: 0, inputTokens: 0, outputTokens: 0, costUsd: 0, listCostUsd: 0, saved: { batchUsd: 0, reuseUsd: 0, cacheUsd: 0, reusedItems: 0, cacheHits: 0 } },
  );
  return { by: dims.join(","), filter, groups: list, total };
}

export interface ItemCost {
  itemId: string;
  /** Every provider request made for the item (in runs, and by `compare` outside them). */
  calls: { runId: string; pipeline: string | null; stage: string; attempt: number; model: string | null; mode: string | null; inputTokens: number; outputTokens: number; costUsd: number; listCostUsd: number; errorClass: string | null; at: string }[];
  /** The item at each stage of each run: paid there, or the output it reused and what that had cost. */
  stages: { runId: string; pipeline: string; stage: string; status: string; reused: boolean; outputCostUsd: number | null; madeIn: string | null }[];
  costUsd: number;
  listCostUsd: number;
  batchSavedUsd: number;
  /** What the outputs it reused from other runs had cost to make. */
  reuseSavedUsd: number;
}

/**
 * Everything one item cost, across runs.
 *
 * @example
 * const item = await itemCost(db, "T-00042");
 * item.calls.length; // provider requests made for it
 */
export async function itemCost(db: Database, itemId: string, pipeline?: string): Promise<ItemCost> {
  const [attempts, stages] = await Promise.all([itemAttempts(db, itemId, pipeline), itemStages(db, itemId, pipeline)]);
  const calls = attempts.map((a) => ({
    runId: a.run_id,
    pipeline: a.pipeline,
    stage: a.stage_id,
    attempt: a.attempt,
    model: a.model,
    mode: a.mode,
    inputTokens: Number(a.input_tokens),
    outputTokens: Number(a.output_tokens),
    costUsd: a.cost,
    listCostUsd: a.list_cost,
    errorClass: a.error_class,
    at: new Date(a.created_at).toISOString(),
  }));
  const used = stages.map((s) => ({ runId: s.run_id, pipeline: s.pipeline, stage: s.stage_id, status: s.status, reused: s.reused, outputCostUsd: s.output_cost, madeIn: s.made_in }));
  return {
    itemId,
    calls,
    stages: used,
    costUsd: round(calls.reduce((s, c) => s + c.costUsd, 0)),
    listCostUsd: round(calls.reduce((s, c) => s + c.listCostUsd, 0)),
    batchSavedUsd: round(calls.filter((c) => c.mode === "batch").reduce((s, c) => s + c.listCostUsd - c.costUsd, 0)),
    reuseSavedUsd: round(used.filter((u) => u.reused && u.madeIn !== u.runId).reduce((s, u) => s + (u.outputCostUsd ?? 0), 0)),
  };
}
