/**
 * Where `estimate` takes how items flow through gates: the pipeline's last
 * finished run, the odds of each item at a gate on a model's answer, and how a
 * gate selects longer or shorter requests.
 */
import type { LlmStage, PipelineDef } from "../core/types.ts";
import type { StagePlan } from "../engine/context.ts";
import type { Database } from "../store/database.ts";
import { latestRunReachingStage } from "../store/reports.ts";
import { latestFinishedRun } from "../store/runs.ts";
import { stageFlow, type StageFlow } from "../store/spend.ts";
import type { GateOdds } from "./gate-odds.ts";
import { pct, type Range, type Rate } from "./estimate-ranges.ts";


export interface History {
  runId: string | null;
  flow: Map<string, StageFlow & { runId: string }>;
}

/**
 * How items flowed through each stage in the pipeline's last finished run;
 * for a stage that run did not reach (a rerun with `--only`, a stage added
 * since), the newest finished run in which items reached it.
 */
export async function historyOf(db: Database, pipeline: PipelineDef, plan: StagePlan[]): Promise<History> {
  const latest = await latestFinishedRun(db, pipeline.id);
  const flow = new Map<string, StageFlow & { runId: string }>();
  if (!latest) return { runId: null, flow };
  for (const f of await stageFlow(db, latest.id)) flow.set(f.stage_id, { ...f, runId: latest.id });
  for (const stage of plan) {
    if ((flow.get(stage.id)?.rows ?? 0) > 0) continue;
    const other = await latestRunReachingStage(db, pipeline.id, stage.id);
    if (!other) continue;
    const f = (await stageFlow(db, other.id)).find((x) => x.stage_id === stage.id);
    if (f) flow.set(stage.id, { ...f, runId: other.id });
  }
  return { runId: latest.id, flow };
}


/** Items of the earlier run a gate's odds per item are learned from. */
export const GATE_EXAMPLES = 5000;

/**
 * An item's pass rate at a gate: its own odds as the midpoint, the run-wide
 * rate's interval scaled around it (how far the earlier run's rate may be
 * from the gate's true one).
 */
export function itemRate(g: Rate, odds: GateOdds, item: unknown): Rate {
  const p = odds.odds(item);
  if (g.mid <= 0 || g.mid >= 1) return { ...g, mid: p, low: Math.min(g.low, p), high: Math.max(g.high, p) };
  return { low: p * (g.low / g.mid), mid: p, high: Math.min(1, 1 - (1 - p) * ((1 - g.high) / (1 - g.mid))), n: g.n };
}

export function describeOdds(odds: GateOdds | undefined, reached: { q: Range; p: Range }[], g: Rate): string[] {
  if (!odds || reached.length === 0) return [];
  const mean = reached.reduce((s, u) => s + (u.p.mid > 0 ? u.q.mid / u.p.mid : 0), 0) / reached.length;
  return [`gate odds per item, learned from the words of the ${odds.n} items that met it in that run: ${pct(mean)} on average for the ${reached.length} items of this input (the run's rate: ${pct(g.mid)})`];
}

/** Width of the input-token range for a gate's selection when no item of the input shows it. */
export const SELECTION_MARGIN = 0.25;

/**
 * How much larger (or smaller) the requests of items a gate lets through are
 * than those of all items that reach it: a gate on a label is rarely blind to
 * length (bug reports are long, spam is short). Measured on the known items
 * of this input (a sample run's, a rerun's) that met the gate, as the
 * token-weighted pass rate over the pass rate, with the ratio estimator's
 * standard error; without such items, ±25% around 1.
 */
export function gateSelection(def: LlmStage, sizes: { tokens: number; passed: boolean }[], anyUnknown: boolean, z: number): Range & { basis?: string } {
  if (!def.when || !anyUnknown) return { low: 1, mid: 1, high: 1 };
  const passed = sizes.filter((x) => x.passed);
  const total = sizes.reduce((s, x) => s + x.tokens, 0);
  if (passed.length < 10 || sizes.length < 2 || total === 0) {
    return { low: 1 - SELECTION_MARGIN, mid: 1, high: 1 + SELECTION_MARGIN, basis: `requests of items the gate lets through: no item of this input met the gate yet, so ±${SELECTION_MARGIN * 100}% around the average request` };
  }
  const n = sizes.length;
  const byCount = passed.length / n;
  const byTokens = passed.reduce((s, x) => s + x.tokens, 0) / total;
  const meanTokens = total / n;
  const se = Math.sqrt(sizes.reduce((s, x) => s + (x.tokens * ((x.passed ? 1 : 0) - byTokens)) ** 2, 0) / (n * (n - 1))) / meanTokens;
  const factor = byTokens / byCount;
  const half = Math.min(0.9, (z * se) / byTokens);
  return {
    low: factor * (1 - half),
    mid: factor,
    high: factor * (1 + half),
    basis: `requests of items the gate lets through: x${factor.toFixed(3)} (±${(half * 100).toFixed(0)}%) the average, from the ${passed.length} of ${n} known items of this input it let through`,
  };
}
