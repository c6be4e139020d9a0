import { Command } from "commander";
import { stableStringify } from "../core/hash.ts";
import { diffRuns, type ItemAtStage, type RunDiff } from "../inspect/diff.ts";
import type { LabelTable } from "../inspect/labels.ts";
import { parsePositiveInt, printJson, withStore } from "./common.ts";

const int = (n: number) => n.toLocaleString("en-US");
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

function moves(table: Record<string, number>): string {
  const entries = Object.entries(table).sort((a, b) => b[1] - a[1]);
  return entries.length ? entries.map(([k, n]) => `${k} ${int(n)}`).join(", ") : "none";
}

function side(x: ItemAtStage | null): string {
  if (!x) return "(not reached)";
  return x.error ? `${x.status}: ${clip(x.error, 90)}` : `${x.status} ${clip(stableStringify(x.output), 90)}`;
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * Before and after of one changed item. When both outputs are objects only
 * the fields that differ are shown, so the change is not clipped away.
 */
export function formatChange(before: ItemAtStage | null, after: ItemAtStage | null, indent = "    "): string[] {
  if (before && after && isRecord(before.output) && isRecord(after.output)) {
    const b = before.output;
    const a = after.output;
    const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])].filter((k) => stableStringify(b[k] ?? null) !== stableStringify(a[k] ?? null));
    const status = before.status === after.status ? before.status : `${before.status} → ${after.status}`;
    if (keys.length === 0) return [`${indent}${status} (same output)`];
    return [`${indent}${status}`, ...keys.map((k) => `${indent}  ${k}: ${clip(stableStringify(b[k] ?? null), 60)} → ${clip(stableStringify(a[k] ?? null), 60)}`)];
  }
  return [`${indent}before ${side(before)}`, `${indent}after  ${side(after)}`];
}

/** from→to label rows, shared with `sluice compare`. */
export function formatLabels(stage: string, labels: LabelTable[], indent = "  "): string[] {
  const lines: string[] = [];
  for (const l of labels) {
    lines.push(`${indent}${stage}.${l.field}: ${int(l.same)}/${int(l.compared)} unchanged (${pct(l.agreement)})`);
    if (l.table.length === 0) continue;
    const w = Math.max(4, ...l.table.map((t) => t.from.length));
    lines.push(`${indent}  ${"from".padEnd(w)}  →  to`);
    for (const t of l.table.slice(0, 15)) lines.push(`${indent}  ${t.from.padEnd(w)}  →  ${t.to.padEnd(w)} ${int(t.count).padStart(6)}`);
    if (l.table.length > 15) lines.push(`${indent}  … ${l.table.length - 15} more transitions (--json has them all)`);
  }
  return lines;
}

/** The human report of a diff. */
export function formatDiff(diff: RunDiff): string {
  const oneSided = diff.items.a + diff.items.b - 2 * diff.items.common;
  const lines = [`diff ${diff.runA} → ${diff.runB} (${diff.pipeline}) · ${int(diff.items.a)} → ${int(diff.items.b)} items, ${int(diff.items.common)} in both${oneSided ? ` (the ${int(oneSided)} in one run only are not compared)` : ""}`];
  lines.push(`final state changed for ${int(diff.final.changed)} item${diff.final.changed === 1 ? "" : "s"}: ${moves(diff.final.transitions)}`, "");
  const rows = [["stage", "version", "items", "output changed", "gate changed", "state changed"]];
  for (const s of diff.stages) {
    const version = s.versionA === s.versionB ? `${s.versionB}` : `${s.versionA ?? "-"} → ${s.versionB ?? "-"}`;
    rows.push([`${s.id} (${s.kind})`, version, int(s.items), int(s.outputChanged), int(s.gateChanged), int(s.stateChanged)]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) lines.push(r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
  for (const s of diff.stages) {
    if (s.gateChanged) lines.push("", `${s.id} gate: ${moves(s.gate)}`);
    if (s.stateChanged) lines.push(`${s.gateChanged ? "" : "\n"}${s.id} state: ${moves(s.states)}`);
    if (s.labels?.some((l) => l.table.length)) lines.push("", ...formatLabels(s.id, s.labels, ""));
    if (s.sample.length) {
      lines.push("", `${s.id}: changed items (sample)`);
      for (const c of s.sample) lines.push(`  ${c.itemId}`, ...formatChange(c.before, c.after));
    }
  }
  return lines.join("\n");
}

export interface DiffCliOptions {
  runA: string;
  runB: string;
  stage?: string;
  sample?: number;
  json?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** `sluice diff <runA> <runB>`: what changed between two runs, per stage. */
export async function diffCli(options: DiffCliOptions): Promise<RunDiff> {
  return withStore(options.env, async (db) => {
    const diff = await diffRuns(db, options.runA, options.runB, { stage: options.stage, sample: options.sample });
    if (options.json) printJson(diff);
    else process.stdout.write(`${formatDiff(diff)}\n`);
    return diff;
  });
}

export function diffCommand(): Command {
  return new Command("diff")
    .argument("<runA>", "the earlier run (the base)")
    .argument("<runB>", "the later run")
    .option("-s, --stage <id>", "only this stage")
    .option("--sample <n>", "changed items to show per stage, with before and after", "5")
    .option("--json", "print the diff as one JSON object")
    .action(async (runA: string, runB: string, opts: { stage?: string; sample: string; json?: boolean }) => {
      await diffCli({ runA, runB, stage: opts.stage, sample: parsePositiveInt(opts.sample, "--sample"), json: opts.json });
    });
}
