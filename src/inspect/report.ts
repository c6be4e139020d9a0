import { ADVANCING, type ItemStatus } from "../core/status.ts";
import type { Database } from "../store/database.ts";
import { stageWorkCounts } from "../store/reports.ts";
import { attemptErrorCounts, callsByModel, deadLetterGroups, rejectedReasonGroups, stageTimings } from "../store/run-details.ts";
import { savedByDimension } from "../store/spend.ts";
import { requireRun } from "../store/runs.ts";
import { diffRuns, type RunDiff } from "./diff.ts";
import { summarizeRun, type RunSummary } from "./summary.ts";

/**
 * Everything `sluice report` and the console's run page show about one run,
 * in one object. The counts and costs that the run summary has are taken from
 * it (`summary`), so the page and `sluice status <runId> --json` cannot
 * disagree; the rest breaks them down (by model, by reason, over time).
 */

/** One stage of the funnel: what became of the items that reached it. */
export interface FunnelStage {
  id: string;
  kind: string;
  /** Items with a row at this stage: looked at, or kept out by its gate. */
  entered: number;
  /** Went on to the next stage (or were committed). */
  passed: number;
  gatedOut: number;
  review: number;
  failed: number;
  /** Queued, in flight or waiting to retry (a run still going, or stopped). */
  pending: number;
}

export interface ModelCost {
  stage: string;
  provider: string;
  model: string;
  mode: string;
  calls: number;
  errors: number;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  costUsd: number;
  listCostUsd: number;
  latencyMs: number;
}

export interface StageTime {
  stage: string;
  /** Seconds from the run's start to the stage's first and last result (null before its first). */
  firstS: number | null;
  lastS: number | null;
  /** Time its provider calls took, added up (calls overlap, so this exceeds the wall time when many are in flight). */
  callSeconds: number;
}

/** Messages that differ only in numbers or quoted values, counted together. */
export interface ReasonGroup {
  stage?: string;
  /** `quarantined` or `deduplicated` for source rows; the error class for dead letters. */
  kind: string;
  reason: string;
  n: number;
  /** One full message of the group and where it came from (an item id, or `line N`). */
  example: string;
  exampleAt: string;
}

/**
 * How a model stage's calls went out. An `auto` stage's mode is chosen when
 * its first chunk makes calls and recorded in the run with why
 * (`settleStageMode`); a batch cut at a deadline's cutoff switches the stage
 * to realtime, the reason appended (`switchStageMode`).
 */
export interface StageModeRow {
  stage: string;
  /** The mode at the end of the run. */
  mode: "batch" | "realtime";
  /** `auto`: chosen by the run (by calls, deadline, batch turnaround); `definition`: the stage's own `mode`. */
  chosenBy: "auto" | "definition";
  /** The mode chosen first, when the run switched from it. */
  switchedFrom?: "batch" | "realtime";
  /** Why, in order: the choice, then each switch. */
  reasons: string[];
}

export interface RunReport {
  summary: RunSummary;
  /** `firstFinishedAt`: when a run finished first, if it went on since (review decisions taken on, dead letters retried). */
  run: { inputPath: string | null; error: string | null; mode: string; rowsRead: number; firstFinishedAt?: string };
  funnel: { rowsRead: number; quarantined: number; deduplicated: number; items: number; stages: FunnelStage[]; committed: number };
  costs: ModelCost[];
  modes: StageModeRow[];
  savings: {
    gateUsd: number;
    /** Model outputs made by earlier runs, at what they cost then (as `sluice cost` counts them). */
    reuse: { items: number; usd: number };
    /** Model answers taken from the request cache or an identical request, at what an output of their stage version cost on average (as `sluice cost` counts them). */
    cache: { items: number; usd: number };
    batchDiscountUsd: number;
  };
  timings: StageTime[];
  failures: { attempts: { stage: string; errorClass: string; n: number }[]; deadLetters: ReasonGroup[] };
  quarantine: ReasonGroup[];
  /** For a rerun: what changed against the run it reused. */
  rerun?: { baseRunId: string; stage: string; diff: RunDiff };
}

const PENDING: readonly string[] = ["queued", "processing", "failed_retryable"];

/**
 * The part of a message that names its kind: numbers and quoted values
 * become `…`, so "item is 292,411 bytes" and "item is 301,002 bytes" count
 * together.
 *
 * @example
 * reasonKind('duplicate id "T-1" with content different from line 4'); // 'duplicate id … with content different from line …'
 */
export function reasonKind(message: string): string {
  return message
    .replace(/"(?:[^"\\]|\\.)*"/g, "…")
    .replace(/\b[0-9a-f]{12,}\b/gi, "…")
    .replace(/\d[\d,._]*/g, "…")
    .trim();
}

function groupReasons(rows: { stage?: string; kind: string; message: string; n: number; at: string }[]): ReasonGroup[] {
  const groups = new Map<string, ReasonGroup>();
  for (const r of rows) {
    const reason = reasonKind(r.message);
    const key = JSON.stringify([r.stage ?? "", r.kind, reason]);
    const g = groups.get(key);
    if (g) g.n += r.n;
    else groups.set(key, { ...(r.stage === undefined ? {} : { stage: r.stage }), kind: r.kind, reason, n: r.n, example: r.message, exampleAt: r.at });
  }
  return [...groups.values()].sort((a, b) => b.n - a.n);
}

const round = (usd: number) => Math.round(usd * 1e6) / 1e6;
const seconds = (from: string, to: string | null) => (to === null ? null : Math.max(0, (new Date(to).getTime() - new Date(from).getTime()) / 1000));

/**
 * Build the report of one run.
 *
 * @example
 * const report = await buildRunReport(db, runId);
 * report.funnel.committed === report.summary.items.byStatus.committed; // true
 */
export async function buildRunReport(db: Database, runId: string): Promise<RunReport> {
  const run = await requireRun(db, runId);
  const summary = await summarizeRun(db, runId);
  const [work, byModel, errors, dead, rejected, times, [saved]] = await Promise.all([
    stageWorkCounts(db, runId),
    callsByModel(db, runId),
    attemptErrorCounts(db, runId),
    deadLetterGroups(db, runId),
    rejectedReasonGroups(db, runId),
    stageTimings(db, runId),
    // Counted and priced as \`sluice cost\` counts them: at model stages, at what an output of the stage version cost.
    savedByDimension(db, "run", { runId }),
  ]);

  const stages: FunnelStage[] = run.stages.map((p, i) => {
    const rows = work.filter((w) => w.stage_index === p.index);
    const count = (pred: (status: string) => boolean) => rows.filter((w) => pred(w.status)).reduce((a, w) => a + w.n, 0);
    const s = summary.stages[i]!;
    return {
      id: p.id,
      kind: p.kind,
      entered: count(() => true),
      passed: count((st) => ADVANCING.includes(st as ItemStatus)),
      gatedOut: s.gatedOut,
      review: s.needsReview,
      failed: s.failed,
      pending: count((st) => PENDING.includes(st)),
    };
  });

  const costs: ModelCost[] = byModel.map((m) => ({
    stage: m.stage_id,
    provider: m.provider,
    model: m.model,
    mode: m.mode ?? "realtime",
    calls: m.calls,
    errors: m.errors,
    inputTokens: m.input_tokens,
    outputTokens: m.output_tokens,
    cachedTokens: m.cached_tokens,
    costUsd: round(m.cost),
    listCostUsd: round(m.list_cost),
    latencyMs: m.latency_ms,
  }));


  const callSeconds = (stage: string) => byModel.filter((m) => m.stage_id === stage).reduce((a, m) => a + m.latency_ms, 0) / 1000;
  const timings: StageTime[] = run.stages.map((p) => {
    const t = times.find((x) => x.stage_index === p.index);
    return { stage: p.id, firstS: t ? seconds(run.created_at, t.first_at) : null, lastS: t ? seconds(run.created_at, t.last_at) : null, callSeconds: callSeconds(p.id) };
  });

  const options = run.options as { mode?: string; baseRunId?: string; stage?: string; firstFinishedAt?: string };
  let rerun: RunReport["rerun"];
  if (options.mode === "rerun" && options.baseRunId) {
    rerun = { baseRunId: options.baseRunId, stage: options.stage ?? "", diff: await diffRuns(db, options.baseRunId, runId, { sample: 5 }) };
  }

  const modes: StageModeRow[] = [];
  for (const st of summary.stages) {
    if (st.mode) {
      const reasons = (st.mode.why ?? "").split("; then ").filter((x) => x !== "");
      // A switch is only ever from batch to realtime (a late batch), and appends its reason.
      const switched = reasons.length > 1 && st.mode.mode === "realtime";
      modes.push({ stage: st.id, mode: st.mode.mode, chosenBy: "auto", ...(switched ? { switchedFrom: "batch" as const } : {}), reasons });
    } else if (st.providerCalls > 0) {
      const mode = st.batchCalls > 0 ? "batch" : "realtime";
      modes.push({ stage: st.id, mode, chosenBy: "definition", reasons: [`the stage's mode is ${mode}${mode === "batch" ? " (its repairs go realtime)" : ""}`] });
    }
  }

  const byStatus = summary.items.byStatus;
  return {
    summary,
    run: {
      inputPath: run.input_path,
      error: run.error,
      mode: options.mode ?? "run",
      rowsRead: run.rows_read,
      ...(typeof options.firstFinishedAt === "string" ? { firstFinishedAt: new Date(options.firstFinishedAt).toISOString() } : {}),
    },
    funnel: {
      rowsRead: summary.items.total,
      quarantined: byStatus.quarantined ?? 0,
      deduplicated: byStatus.deduplicated ?? 0,
      items: summary.items.total - (byStatus.quarantined ?? 0) - (byStatus.deduplicated ?? 0),
      stages,
      committed: byStatus.committed ?? 0,
    },
    costs,
    modes,
    savings: {
      gateUsd: summary.savings.gateUsd,
      reuse: { items: saved?.reused ?? 0, usd: round(saved?.reuse_saved ?? 0) },
      cache: { items: saved?.cache_hits ?? 0, usd: round(saved?.cache_saved ?? 0) },
      batchDiscountUsd: summary.savings.batchDiscountUsd,
    },
    timings,
    failures: {
      attempts: errors.map((e) => ({ stage: e.stage_id, errorClass: e.error_class, n: e.n })),
      deadLetters: groupReasons(dead.map((d) => ({ stage: d.stage_id, kind: d.error_class ?? "unknown", message: d.message ?? "(no message)", n: d.n, at: d.example }))),
    },
    quarantine: groupReasons(rejected.map((r) => ({ kind: r.state, message: r.reason, n: r.n, at: `line ${r.first_line}` }))),
    ...(rerun ? { rerun } : {}),
  };
}
