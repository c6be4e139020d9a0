import * as Plot from "@observablehq/plot";
import { parseHTML } from "linkedom";
import type { RunReport } from "../inspect/report.ts";
import { trusted, usd, type Html } from "./html.ts";

/**
 * The report's charts, drawn by Observable Plot on a server-side DOM
 * (linkedom) and inlined as SVG: the page needs no script and no network to
 * show them. Each returns null when there is nothing to draw.
 */

const OUTCOMES = ["passed", "gated out", "review", "failed", "pending"] as const;
const OUTCOME_COLORS = ["#2f9e44", "#adb5bd", "#f08c00", "#e03131", "#4dabf7"];
const WIDTH = 1000;
const FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif";

function render(options: Plot.PlotOptions): Html {
  // A fresh document per chart: Plot appends its legend and style nodes to it.
  const { document } = parseHTML("<!doctype html><html><body></body></html>");
  const node = Plot.plot({ width: WIDTH, style: { fontFamily: FONT, fontSize: "12px", background: "transparent" }, ...options, document }) as unknown as { outerHTML: string };
  return trusted(node.outerHTML);
}

/** Room for the longest label on a band axis, at about 7 px a character. */
const labelMargin = (labels: string[]) => Math.min(220, 16 + 7 * Math.max(4, ...labels.map((l) => l.length)));

/** Rows read, then for each stage what became of the items that reached it, then what was committed. */
export function funnelChart(report: RunReport): Html {
  const f = report.funnel;
  const rows: { row: string; outcome: string; n: number }[] = [
    { row: "rows read", outcome: "passed", n: f.items },
    { row: "rows read", outcome: "quarantined", n: f.quarantined },
    { row: "rows read", outcome: "deduplicated", n: f.deduplicated },
  ];
  for (const s of f.stages) {
    const counts = { passed: s.passed, "gated out": s.gatedOut, review: s.review, failed: s.failed, pending: s.pending };
    for (const outcome of OUTCOMES) rows.push({ row: s.id, outcome, n: counts[outcome] });
  }
  rows.push({ row: "committed", outcome: "passed", n: f.committed });
  const order = ["rows read", ...f.stages.map((s) => s.id), "committed"];
  const totals = order.map((row) => ({ row, n: rows.filter((r) => r.row === row).reduce((a, r) => a + r.n, 0) }));
  return render({
    marginLeft: labelMargin(order),
    marginRight: 60,
    height: 40 + 30 * order.length,
    x: { label: "items", grid: true },
    y: { domain: order, label: null },
    color: { domain: [...OUTCOMES, "quarantined", "deduplicated"], range: [...OUTCOME_COLORS, "#862e9c", "#ced4da"], legend: true },
    marks: [
      Plot.barX(rows.filter((r) => r.n > 0), Plot.stackX({ y: "row", x: "n", fill: "outcome", order: [...OUTCOMES, "quarantined", "deduplicated"], title: (d: { outcome: string; n: number }) => `${d.outcome}: ${d.n}` })),
      Plot.text(totals, { y: "row", x: "n", text: (d: { n: number }) => d.n.toLocaleString("en-US"), textAnchor: "start", dx: 4 }),
      Plot.ruleX([0]),
    ],
  });
}

/** What each stage paid, by model and mode. */
export function costChart(report: RunReport): Html | null {
  const rows = report.costs.filter((c) => c.costUsd > 0).map((c) => ({ stage: c.stage, model: `${c.model} (${c.mode})`, usd: c.costUsd }));
  if (rows.length === 0) return null;
  const stages = report.summary.stages.filter((s) => rows.some((r) => r.stage === s.id)).map((s) => s.id);
  return render({
    marginLeft: labelMargin(stages),
    marginRight: 80,
    height: 60 + 34 * stages.length,
    x: { label: "cost (USD)", grid: true, tickFormat: (d: number) => `$${d}` },
    y: { domain: stages, label: null },
    color: { legend: true, scheme: "tableau10" },
    marks: [
      Plot.barX(rows, Plot.stackX({ y: "stage", x: "usd", fill: "model", title: (d: { model: string; usd: number }) => `${d.model}: ${usd(d.usd)}` })),
      Plot.text(
        stages.map((stage) => ({ stage, usd: report.summary.stages.find((s) => s.id === stage)!.costUsd })),
        { y: "stage", x: "usd", text: (d: { usd: number }) => usd(d.usd), textAnchor: "start", dx: 4 },
      ),
      Plot.ruleX([0]),
    ],
  });
}

/** What the run spent beside what gates, reuse, the request cache and the batch discount kept it from spending. */
export function savingsChart(report: RunReport): Html {
  const s = report.savings;
  const rows = [
    { what: "spent", usd: report.summary.costUsd, kind: "spent" },
    { what: "gates (estimate)", usd: s.gateUsd, kind: "saved" },
    { what: "reused outputs", usd: s.reuse.usd, kind: "saved" },
    { what: "request cache (estimate)", usd: s.cache.usd, kind: "saved" },
    { what: "batch discount", usd: s.batchDiscountUsd, kind: "saved" },
  ];
  return render({
    marginLeft: labelMargin(rows.map((r) => r.what)),
    marginRight: 80,
    height: 40 + 30 * rows.length,
    x: { label: "USD", grid: true, tickFormat: (d: number) => `$${d}` },
    y: { domain: rows.map((r) => r.what), label: null },
    color: { domain: ["spent", "saved"], range: ["#1971c2", "#2f9e44"] },
    marks: [
      Plot.barX(rows, { y: "what", x: "usd", fill: "kind" }),
      Plot.text(rows, { y: "what", x: "usd", text: (d: { usd: number }) => usd(d.usd), textAnchor: "start", dx: 4 }),
      Plot.ruleX([0]),
    ],
  });
}

/** Tokens per stage: input (of which cached) and output. */
export function tokenChart(report: RunReport): Html | null {
  const rows = report.costs.flatMap((c) => [
    { stage: c.stage, part: "input", n: c.inputTokens - c.cachedTokens },
    { stage: c.stage, part: "input (cached)", n: c.cachedTokens },
    { stage: c.stage, part: "output", n: c.outputTokens },
  ]).filter((r) => r.n > 0);
  if (rows.length === 0) return null;
  const stages = report.summary.stages.filter((s) => rows.some((r) => r.stage === s.id)).map((s) => s.id);
  return render({
    marginLeft: labelMargin(stages),
    marginRight: 30,
    height: 60 + 34 * stages.length,
    x: { label: "tokens", grid: true },
    y: { domain: stages, label: null },
    color: { domain: ["input", "input (cached)", "output"], range: ["#748ffc", "#bac8ff", "#f76707"], legend: true },
    marks: [Plot.barX(rows, Plot.stackX({ y: "stage", x: "n", fill: "part", order: ["input", "input (cached)", "output"] })), Plot.ruleX([0])],
  });
}

/** When each stage wrote its first and last result, from the run's start: stages of one segment overlap. */
export function timeChart(report: RunReport): Html | null {
  const rows = report.timings.filter((t) => t.firstS !== null && t.lastS !== null);
  if (rows.length === 0) return null;
  // A stage that wrote everything at once still gets a visible sliver.
  const end = Math.max(...rows.map((t) => t.lastS!));
  const sliver = Math.max(end / 200, 0.01);
  const bars = rows.map((t) => ({ stage: t.stage, from: t.firstS!, to: Math.max(t.lastS!, t.firstS! + sliver), wall: t.lastS! - t.firstS! }));
  return render({
    marginLeft: labelMargin(report.timings.map((t) => t.stage)),
    marginRight: 70,
    height: 40 + 30 * report.timings.length,
    x: { label: "seconds since the run started", grid: true },
    y: { domain: report.timings.map((t) => t.stage), label: null },
    marks: [
      Plot.barX(bars, { y: "stage", x1: "from", x2: "to", fill: "#1971c2" }),
      Plot.text(bars, { y: "stage", x: "to", text: (d: { wall: number }) => `${d.wall.toFixed(1)} s`, textAnchor: "start", dx: 4 }),
    ],
  });
}

/** Failed attempts by stage and error class (retried ones included). */
export function failureChart(report: RunReport): Html | null {
  const rows = report.failures.attempts;
  if (rows.length === 0) return null;
  const stages = [...new Set(rows.map((r) => r.stage))];
  return render({
    marginLeft: labelMargin(stages),
    marginRight: 30,
    height: 60 + 34 * stages.length,
    x: { label: "failed attempts", grid: true },
    y: { domain: stages, label: null },
    color: { legend: true, domain: ["transient", "deterministic", "quality"], unknown: "#868e96", range: ["#4dabf7", "#e03131", "#f08c00"] },
    marks: [Plot.barX(rows, Plot.stackX({ y: "stage", x: "n", fill: "errorClass", title: (d: { errorClass: string; n: number }) => `${d.errorClass}: ${d.n}` })), Plot.ruleX([0])],
  });
}
