import type { Database } from "../store/database.ts";
import { fieldCounts, lastFinishedRuns, outputCosts, statusCounts, type RecentRun } from "../store/spend.ts";
import { enumFields } from "./labels.ts";

/**
 * `sluice drift`: how each stage behaved across a pipeline's last runs, and
 * which changes between consecutive runs are too large to be chance: label
 * distributions (Jensen-Shannon divergence, with a G-test), the rates of
 * items a gate kept out, a filter dropped, a stage failed or sent to review
 * (two-proportion z-test), and tokens and cost per item (relative change).
 * A change is flagged when it is both larger than its threshold and
 * significant at `alpha`, so a small run's noise is not taken for drift
 * (per-item figures are compared only between runs with 30 paid items or
 * more at the stage).
 */

export interface DriftThresholds {
  /** Jensen-Shannon divergence of a label distribution, in bits (0..1). */
  js: number;
  /** Absolute change of a rate (0.05 = 5 percentage points). */
  rate: number;
  /** Relative change of tokens or cost per item (0.25 = 25%). */
  relative: number;
  /** Significance level of the tests. */
  alpha: number;
}

export const DEFAULT_THRESHOLDS: DriftThresholds = { js: 0.02, rate: 0.05, relative: 0.25, alpha: 0.01 };

export type RateName = "gatePass" | "dropped" | "failed" | "review";

export interface StageRun {
  runId: string;
  version: string | null;
  /** Items that reached the stage, and those its gate let through. */
  reached: number;
  handled: number;
  rates: Record<RateName, { k: number; n: number; value: number | null }>;
  /** Per enum field of the output: items by value. */
  labels: Record<string, Record<string, number>>;
  /** Over items whose output was paid for: what making it cost, and the tokens its requests took (reused outputs at what they cost when made; cache hits left out). */
  perItem: { items: number; tokens: number | null; costUsd: number | null; sdTokens: number; sdCostUsd: number };
}

export interface DriftFlag {
  stage: string;
  metric: string;
  from: string;
  to: string;
  before: number;
  after: number;
  /** JS divergence for labels; absolute change for rates; relative change for per-item figures. */
  change: number;
  threshold: number;
  /** The test's p-value, where there is one. */
  p?: number;
  message: string;
}

export interface DriftReport {
  pipeline: string;
  runs: { id: string; createdAt: string }[];
  stages: { id: string; runs: StageRun[]; labelDivergence: Record<string, (number | null)[]> }[];
  flags: DriftFlag[];
  thresholds: DriftThresholds;
}

const RATES: { name: RateName; label: string; k: (c: Counts) => number; n: (c: Counts) => number }[] = [
  { name: "gatePass", label: "gate pass rate", k: (c) => c.handled, n: (c) => c.reached },
  { name: "dropped", label: "share dropped by the filter", k: (c) => c.dropped, n: (c) => c.handled },
  { name: "failed", label: "failure rate", k: (c) => c.failed, n: (c) => c.handled },
  { name: "review", label: "review rate", k: (c) => c.review, n: (c) => c.handled },
];

interface Counts {
  reached: number;
  handled: number;
  dropped: number;
  failed: number;
  review: number;
}

/**
 * Per stage, across the pipeline's last `last` finished runs (oldest first),
 * with every change between consecutive runs beyond its threshold flagged.
 *
 * @example
 * const report = await driftReport(db, "ticket-triage", { last: 5 });
 * if (report.flags.length) console.log(report.flags.map((f) => f.message).join("\n"));
 */
export async function driftReport(db: Database, pipeline: string, options: { last?: number; thresholds?: Partial<DriftThresholds> } = {}): Promise<DriftReport> {
  const thresholds = { ...DEFAULT_THRESHOLDS, ...options.thresholds };
  const runs = await lastFinishedRuns(db, pipeline, options.last ?? 5);
  const ids = runs.map((r) => r.id);
  const report: DriftReport = { pipeline, runs: runs.map((r) => ({ id: r.id, createdAt: new Date(r.created_at).toISOString() })), stages: [], flags: [], thresholds };
  if (runs.length === 0) return report;

  const [statuses, costs] = await Promise.all([statusCounts(db, ids), outputCosts(db, ids)]);
  for (const stage of stageOrder(runs)) {
    const fields = enumFields(stage.kind, stage.parts ?? {});
    const labelRows = new Map<string, { run_id: string; value: string | null; n: number }[]>();
    for (const field of fields.filter((f) => f !== "*")) labelRows.set(field, await fieldCounts(db, ids, stage.id, field));
    const perRun: StageRun[] = runs.map((run) => {
      const c: Counts = { reached: 0, handled: 0, dropped: 0, failed: 0, review: 0 };
      for (const s of statuses.filter((x) => x.run_id === run.id && x.stage_id === stage.id)) {
        c.reached += s.n;
        if (s.handled) c.handled += s.n;
        if (s.handled && s.status === "gated_out") c.dropped += s.n;
        if (s.status === "failed_terminal") c.failed += s.n;
        if (s.status === "needs_review") c.review += s.n;
      }
      const rates = Object.fromEntries(RATES.map((r) => [r.name, { k: r.k(c), n: r.n(c), value: r.n(c) ? r.k(c) / r.n(c) : null }])) as StageRun["rates"];
      const labels: StageRun["labels"] = {};
      for (const [field, rows] of labelRows) {
        labels[field] = Object.fromEntries(rows.filter((r) => r.run_id === run.id).map((r) => [r.value ?? "(none)", r.n]));
      }
      const cost = costs.find((x) => x.run_id === run.id && x.stage_id === stage.id);
      const items = cost?.items ?? 0;
      return {
        runId: run.id,
        version: run.stages.find((s) => s.id === stage.id)?.version ?? null,
        reached: c.reached,
        handled: c.handled,
        rates,
        labels,
        perItem: {
          items,
          tokens: items ? (Number(cost!.input_tokens) + Number(cost!.output_tokens)) / items : null,
          costUsd: items ? cost!.cost / items : null,
          sdTokens: cost?.sd_tokens ?? 0,
          sdCostUsd: cost?.sd_cost ?? 0,
        },
      };
    });
    const labelDivergence: Record<string, (number | null)[]> = {};
    for (const field of labelRows.keys()) labelDivergence[field] = perRun.map((r, i) => (i === 0 ? null : jsDivergence(perRun[i - 1]!.labels[field]!, r.labels[field]!)));
    report.stages.push({ id: stage.id, runs: perRun, labelDivergence });

    for (let i = 1; i < perRun.length; i++) {
      const before = perRun[i - 1]!;
      const after = perRun[i]!;
      const at = { stage: stage.id, from: before.runId, to: after.runId };
      for (const field of labelRows.keys()) {
        const a = before.labels[field]!;
        const b = after.labels[field]!;
        const js = labelDivergence[field]![i]!;
        const p = gTest(a, b);
        if (js >= thresholds.js && p < thresholds.alpha) {
          report.flags.push({ ...at, metric: `labels.${field}`, before: 0, after: js, change: js, threshold: thresholds.js, p, message: `${stage.id}: ${field} distribution moved (JS ${js.toFixed(3)} bits ≥ ${thresholds.js}, p ${fmtP(p)}) ${before.runId} → ${after.runId}: ${biggestMoves(a, b)}` });
        }
      }
      for (const r of RATES) {
        const x = before.rates[r.name];
        const y = after.rates[r.name];
        if (x.value === null || y.value === null) continue;
        const change = y.value - x.value;
        const p = twoProportionP(x.k, x.n, y.k, y.n);
        if (Math.abs(change) >= thresholds.rate && p < thresholds.alpha) {
          report.flags.push({ ...at, metric: r.name, before: x.value, after: y.value, change, threshold: thresholds.rate, p, message: `${stage.id}: ${r.label} ${pct(x.value)} → ${pct(y.value)} (${change > 0 ? "+" : ""}${(change * 100).toFixed(1)} points, p ${fmtP(p)}) ${before.runId} → ${after.runId}` });
        }
      }
      const perItem = [
        ["tokensPerItem", "tokens per item", (s: StageRun) => s.perItem.tokens, (s: StageRun) => s.perItem.sdTokens],
        ["costPerItem", "cost per item", (s: StageRun) => s.perItem.costUsd, (s: StageRun) => s.perItem.sdCostUsd],
      ] as const;
      for (const [metric, label, get, sd] of perItem) {
        const x = get(before);
        const y = get(after);
        // Means of a few items say little: too few on either side, no comparison.
        if (x === null || y === null || x === 0 || Math.min(before.perItem.items, after.perItem.items) < MIN_ITEMS) continue;
        const change = (y - x) / x;
        const p = welchP(x, sd(before), before.perItem.items, y, sd(after), after.perItem.items);
        if (Math.abs(change) >= thresholds.relative && p < thresholds.alpha) {
          const show = (v: number) => (metric === "costPerItem" ? `$${v.toFixed(6)}` : v.toFixed(1));
          report.flags.push({ ...at, metric, before: x, after: y, change, threshold: thresholds.relative, p, message: `${stage.id}: ${label} ${show(x)} → ${show(y)} (${change > 0 ? "+" : ""}${(change * 100).toFixed(0)}%, p ${fmtP(p)}) ${before.runId} → ${after.runId}` });
        }
      }
    }
  }
  return report;
}

/** The stages of the runs, in the newest run's order (stages it no longer has after them), each with its newest definition. */
function stageOrder(runs: RecentRun[]): { id: string; kind: string; parts?: Record<string, unknown> }[] {
  const seen = new Map<string, { id: string; kind: string; parts?: Record<string, unknown> }>();
  for (const run of [...runs].reverse()) for (const s of run.stages) if (!seen.has(s.id)) seen.set(s.id, s);
  return [...seen.values()];
}

// --- statistics --------------------------------------------------------------------

/**
 * Jensen-Shannon divergence of two count distributions, in bits: 0 for the
 * same shares, 1 for disjoint ones.
 *
 * @example
 * jsDivergence({ a: 10, b: 10 }, { a: 10, b: 10 }); // 0
 * jsDivergence({ a: 1 }, { b: 1 }); // 1
 */
export function jsDivergence(a: Record<string, number>, b: Record<string, number>): number {
  const na = total(a);
  const nb = total(b);
  if (na === 0 || nb === 0) return 0;
  let sum = 0;
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const p = (a[key] ?? 0) / na;
    const q = (b[key] ?? 0) / nb;
    const m = (p + q) / 2;
    if (p > 0) sum += 0.5 * p * Math.log2(p / m);
    if (q > 0) sum += 0.5 * q * Math.log2(q / m);
  }
  return Math.max(0, Math.min(1, sum));
}

/** p-value of a G-test of independence on the 2×k table of two count distributions (1 when nothing to test). */
export function gTest(a: Record<string, number>, b: Record<string, number>): number {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => (a[k] ?? 0) + (b[k] ?? 0) > 0);
  const na = total(a);
  const nb = total(b);
  if (keys.length < 2 || na === 0 || nb === 0) return 1;
  const n = na + nb;
  let g = 0;
  for (const k of keys) {
    const col = (a[k] ?? 0) + (b[k] ?? 0);
    for (const [obs, row] of [[a[k] ?? 0, na], [b[k] ?? 0, nb]] as const) {
      const expected = (row * col) / n;
      if (obs > 0) g += 2 * obs * Math.log(obs / expected);
    }
  }
  return chiSquareSurvival(g, keys.length - 1);
}

/** Paid items a run needs at a stage before its tokens and cost per item are compared. */
const MIN_ITEMS = 30;

/** Two-sided p-value of the difference of two means (Welch's statistic, normal approximation: both sides have at least 30 items). */
export function welchP(m1: number, sd1: number, n1: number, m2: number, sd2: number, n2: number): number {
  const se = Math.sqrt((sd1 * sd1) / n1 + (sd2 * sd2) / n2);
  if (se === 0) return m1 === m2 ? 1 : 0;
  const z = (m2 - m1) / se;
  return chiSquareSurvival(z * z, 1);
}

/** Two-sided p-value of the two-proportion z-test (pooled). */
export function twoProportionP(k1: number, n1: number, k2: number, n2: number): number {
  if (n1 === 0 || n2 === 0) return 1;
  const pooled = (k1 + k2) / (n1 + n2);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2));
  if (se === 0) return k1 / n1 === k2 / n2 ? 1 : 0;
  const z = Math.abs(k1 / n1 - k2 / n2) / se;
  return chiSquareSurvival(z * z, 1);
}

/**
 * P(X ≥ x) for a chi-square variable with `df` degrees of freedom: the
 * regularized upper incomplete gamma function Q(df/2, x/2), by its series
 * below a + 1 and its continued fraction above (as in Numerical Recipes).
 *
 * @example
 * chiSquareSurvival(3.841, 1); // ≈ 0.05
 */
export function chiSquareSurvival(x: number, df: number): number {
  if (x <= 0) return 1;
  const a = df / 2;
  const y = x / 2;
  const lnFront = a * Math.log(y) - y - logGamma(a);
  if (y < a + 1) {
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < 500 && Math.abs(term) > Math.abs(sum) * 1e-15; n++) {
      term *= y / (a + n);
      sum += term;
    }
    return Math.max(0, Math.min(1, 1 - sum * Math.exp(lnFront)));
  }
  const tiny = 1e-300;
  let b = y + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 500; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return Math.max(0, Math.min(1, Math.exp(lnFront) * h));
}

/** ln Γ(x), Lanczos approximation. */
function logGamma(x: number): number {
  const g = [76.18009172947146, -86.50532032941677, 24.01409824083091, -1.231739572450155, 0.1208650973866179e-2, -0.5395239384953e-5];
  let y = x;
  const tmp = x + 5.5 - (x + 0.5) * Math.log(x + 5.5);
  let ser = 1.000000000190015;
  for (const c of g) ser += c / ++y;
  return -tmp + Math.log((2.5066282746310005 * ser) / x);
}

function total(counts: Record<string, number>): number {
  return Object.values(counts).reduce((s, n) => s + n, 0);
}

/** The values whose share moved most, as `other 14.0% → 0.0%`. */
function biggestMoves(a: Record<string, number>, b: Record<string, number>): string {
  const na = total(a) || 1;
  const nb = total(b) || 1;
  return [...new Set([...Object.keys(a), ...Object.keys(b)])]
    .map((k) => ({ k, x: (a[k] ?? 0) / na, y: (b[k] ?? 0) / nb }))
    .sort((p, q) => Math.abs(q.y - q.x) - Math.abs(p.y - p.x))
    .slice(0, 3)
    .map((m) => `${m.k} ${pct(m.x)} → ${pct(m.y)}`)
    .join(", ");
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const fmtP = (p: number) => (p < 0.001 ? "< 0.001" : `= ${p.toFixed(3)}`);
