import { fmtMs } from "../core/duration.ts";
import type { RunSummary } from "../inspect/summary.ts";

const usd = (n: number) => `$${n.toFixed(n < 1 ? 4 : 2)}`;
const int = (n: number) => n.toLocaleString("en-US");

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")).join("\n");
}

/** The human summary printed at the end of run, resume and rerun. */
export function formatSummary(summary: RunSummary): string {
  const lines: string[] = [];
  lines.push(`run ${summary.runId} · ${summary.pipeline} · ${summary.status}`);
  if (summary.error) lines.push(`failed: ${summary.error}`);
  lines.push("");
  lines.push(
    table([
      ["stage", "processed", "reused", "gated out", "review", "failed", "calls", "tokens in/out", "cost"],
      ...summary.stages.map((s) => [
        `${s.id} (${s.kind})`,
        int(s.processed),
        int(s.reused),
        int(s.gatedOut),
        int(s.needsReview),
        int(s.failed),
        int(s.providerCalls),
        s.inputTokens || s.outputTokens ? `${int(s.inputTokens)}/${int(s.outputTokens)}` : "-",
        usd(s.costUsd),
      ]),
    ]),
  );
  lines.push("");
  const parts = Object.entries(summary.items.byStatus)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${int(v)}`);
  lines.push(`rows read ${int(summary.items.total)}: ${parts.join(", ")}`);
  lines.push(`total cost ${usd(summary.costUsd)}`);
  if (summary.budget) {
    const b = summary.budget;
    lines.push(b.capUsd === null ? `budget: ${usd(b.spentUsd)} spent` : `budget: ${usd(b.spentUsd)} spent of ${usd(b.capUsd)}`);
    if (b.exhausted) lines.push(`stopped: ${b.exhausted}`);
  }
  const gated = summary.stages.filter((s) => s.gateSavedUsd > 0);
  if (gated.length) {
    lines.push(`the gates kept ${gated.map((s) => `${int(s.gatedOut)} items from ${s.id}`).join(", ")}: about ${usd(summary.savings.gateUsd)} not spent`);
  }
  const batched = summary.stages.filter((s) => s.batchCalls > 0);
  if (batched.length) {
    lines.push(`batch API: ${batched.map((s) => `${int(s.batchCalls)} ${s.id} calls`).join(", ")} at batch price, ${usd(summary.savings.batchDiscountUsd)} below list price`);
  }
  if (summary.deadlineAt) {
    const ahead = summary.finishedAt ? Math.round((Date.parse(summary.deadlineAt) - Date.parse(summary.finishedAt)) / 1000) : undefined;
    const end = ahead === undefined ? "" : ahead >= 0 ? `; finished ${fmtMs(ahead * 1000)} before it` : `; finished ${fmtMs(-ahead * 1000)} after it`;
    lines.push(`deadline ${summary.deadlineAt}${end}`);
  }
  for (const s of summary.stages.filter((x) => x.mode?.why)) lines.push(`${s.id}: ${s.mode!.mode} (${s.mode!.why})`);
  return lines.join("\n");
}
