import type { Database } from "../store/database.ts";
import { finalStatusCounts, rejectedRowCounts, stageCallTotals, stageWorkCounts, unstartedItemCount } from "../store/reports.ts";
import { requireRun } from "../store/runs.ts";
import { carriedPairs, recordedReads } from "../core/dag.ts";
import { budgetRows, runBudgetKey } from "../store/budgets.ts";

export interface StageSummary {
  id: string;
  kind: string;
  version: string;
  /** Items the stage looked at in this run (computed or reused); items its gate kept out are not counted. */
  processed: number;
  /** Of those, outputs taken from earlier work (reuse rule or request cache) at zero cost. */
  reused: number;
  gatedOut: number;
  failed: number;
  needsReview: number;
  /** Requests sent to a provider in this run (reused outputs and cache hits are not). */
  providerCalls: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
  /** Requests answered through a provider's batch API, paid at its price (in providerCalls too, which also counts a batch's error results and expired requests). */
  batchCalls: number;
  /** List price minus price paid on those batch calls. */
  batchSavedUsd: number;
  /** Estimated cost the gate avoided: items kept out × what an answered call of this stage cost in this run. */
  gateSavedUsd: number;
  /** For an `auto` stage: the mode the run settled on, and why (with any switch after a late batch). */
  mode?: { mode: "batch" | "realtime"; why: string | null };
}

/** The `--json` contract of `sluice run`, `resume` and `rerun`: the one JSON object on their last stdout line. */
export interface RunSummary {
  runId: string;
  pipeline: string;
  status: string;
  items: { total: number; byStatus: Record<string, number> };
  stages: StageSummary[];
  costUsd: number;
  savings: { batchDiscountUsd: number; gateUsd: number };
  startedAt: string;
  finishedAt: string | null;
  /**
   * Present when a budget applies: the run's cap (null when only its
   * pipeline's daily budget does), what was settled against it, and, for a
   * run that stopped at a budget (`status: budget_exhausted`), why.
   */
  budget?: { capUsd: number | null; spentUsd: number; exhausted?: string };
  /** The run's deadline (`--deadline`), when it has one. */
  deadlineAt?: string;
  /** Why a run ended `failed` (a stage stopped by its provider, an error), as recorded on it. */
  error?: string;
}

export async function summarizeRun(db: Database, runId: string): Promise<RunSummary> {
  const run = await requireRun(db, runId);
  // With branches, an item gated out of one branch but carried on by another ends where it went on.
  const finals = await finalStatusCounts(db, runId, carriedPairs(recordedReads(run.stages)));
  const notStarted = await unstartedItemCount(db, runId);
  const rejected = await rejectedRowCounts(db, runId);
  const byStatus: Record<string, number> = {};
  const add = (k: string, n: number) => n && (byStatus[k] = (byStatus[k] ?? 0) + n);
  for (const r of finals) add(r.status, r.n);
  add("queued", notStarted);
  for (const r of rejected) add(r.state, r.n);
  const total = Object.values(byStatus).reduce((a, b) => a + b, 0);

  const work = await stageWorkCounts(db, runId);
  const calls = await stageCallTotals(db, runId);

  const modes = (run.options.stageModes ?? {}) as Record<string, "batch" | "realtime">;
  const whys = (run.options.stageModeWhy ?? {}) as Record<string, string | null>;
  const stages: StageSummary[] = run.stages.map((p) => {
    const rows = work.filter((w) => w.stage_index === p.index);
    const count = (pred: (w: (typeof rows)[number]) => boolean) => rows.filter(pred).reduce((a, w) => a + w.n, 0);
    const c = calls.find((x) => x.stage_id === p.id);
    // Items a gate kept out never reached the model; price them at what a call of the stage cost here
    // (at the batch price where the stage went by batch: what they would have been paid at, not the list price).
    const gatedByGate = count((w) => w.status === "gated_out" && !w.handled);
    const perCall = c && c.answered > 0 ? c.cost / c.answered : 0;
    return {
      id: p.id,
      kind: p.kind,
      version: p.version,
      processed: count((w) => w.handled),
      reused: count((w) => w.reused),
      gatedOut: count((w) => w.status === "gated_out"),
      failed: count((w) => w.status === "failed_terminal"),
      needsReview: count((w) => w.status === "needs_review"),
      providerCalls: c?.calls ?? 0,
      inputTokens: c?.input_tokens ?? 0,
      outputTokens: c?.output_tokens ?? 0,
      costUsd: round(c?.cost ?? 0),
      batchCalls: c?.batch_calls ?? 0,
      batchSavedUsd: round(c?.batch_saved ?? 0),
      gateSavedUsd: round(gatedByGate * perCall),
      ...(modes[p.id] ? { mode: { mode: modes[p.id]!, why: whys[p.id] ?? null } } : {}),
    };
  });
  const costUsd = round(stages.reduce((a, s) => a + s.costUsd, 0));
  const [cap] = await budgetRows(db, [runBudgetKey(runId)]);
  const exhausted = run.status === "budget_exhausted" ? (run.error ?? "budget exhausted") : undefined;
  const budget = cap || exhausted ? { capUsd: cap ? cap.capUsd : null, spentUsd: round(cap ? cap.spentUsd : costUsd), ...(exhausted ? { exhausted } : {}) } : undefined;
  return {
    runId,
    pipeline: run.pipeline,
    status: run.status,
    items: { total, byStatus },
    stages,
    costUsd,
    savings: {
      batchDiscountUsd: round(stages.reduce((a, s) => a + s.batchSavedUsd, 0)),
      gateUsd: round(stages.reduce((a, s) => a + s.gateSavedUsd, 0)),
    },
    startedAt: new Date(run.created_at).toISOString(),
    finishedAt: run.finished_at ? new Date(run.finished_at).toISOString() : null,
    ...(budget ? { budget } : {}),
    ...(typeof run.options.deadlineAt === "string" ? { deadlineAt: run.options.deadlineAt } : {}),
    ...(run.status === "failed" && run.error ? { error: run.error } : {}),
  };
}

function round(usd: number): number {
  return Math.round(usd * 1e6) / 1e6;
}
