import { stableStringify } from "../core/hash.ts";
import type { PipelineDef } from "../core/types.ts";
import { planRecord, planStages } from "../engine/plan.ts";
import type { Database } from "../store/database.ts";
import { outputCountsByVersion, outputsOfVersion, stageVersionsSeen } from "../store/reports.ts";

/**
 * The history of each stage's versions, from two records the store already
 * keeps: every run's plan (`runs.stages`, with the parts that make up each
 * version) and the versioned outputs in `stage_outputs`, which are never
 * deleted, so an old version's outputs stay queryable and a rerun with an old
 * definition reuses them at zero cost.
 */

/** The parts of a stage version `sluice versions` reports on, in this order. */
export const VERSION_PARTS = ["kind", "codeVersion", "settings", "provider", "model", "prompt", "params", "schema", "target"] as const;

export interface PartChange {
  part: string;
  from: unknown;
  to: unknown;
}

export interface StageVersionInfo {
  stage: string;
  version: string;
  parts: Record<string, unknown>;
  /** What differs from the version of this stage seen just before it (empty for the first). */
  changes: PartChange[];
  /** The version before this one, in order of first appearance. */
  previous: string | null;
  /** The first run planned with this version, and when it started. Null for a current definition that never ran. */
  firstRunId: string | null;
  firstRunAt: string | null;
  lastRunAt: string | null;
  runs: number;
  /** Output rows of this version in the store (one per item and input). */
  outputs: number;
  /** Distinct items with an output of this version. */
  items: number;
  /** What producing those outputs cost. */
  costUsd: number;
  /** True when it is the version the pipeline defines now. */
  current: boolean;
}

/**
 * Part names whose values differ between two `versionParts` records (a prompt
 * change is named `prompt.system` or `prompt.user` when only one half changed).
 *
 * @example
 * changedParts(versionParts(before), versionParts(after)).map((c) => c.part); // ["model", "params"]
 */
export function changedParts(before: Record<string, unknown>, after: Record<string, unknown>): PartChange[] {
  const names = [...new Set([...VERSION_PARTS, ...Object.keys(before), ...Object.keys(after)])];
  return names
    .filter((part) => stableStringify(before[part] ?? null) !== stableStringify(after[part] ?? null))
    .map((part) => ({ part: part === "prompt" ? promptPart(before.prompt, after.prompt) : part, from: before[part] ?? null, to: after[part] ?? null }));
}

/** Which half of a prompt changed: `prompt.system`, `prompt.user`, or both as `prompt`. */
function promptPart(before: unknown, after: unknown): string {
  const b = (before ?? {}) as Record<string, unknown>;
  const a = (after ?? {}) as Record<string, unknown>;
  const system = stableStringify(b.system ?? null) !== stableStringify(a.system ?? null);
  const user = stableStringify(b.user ?? null) !== stableStringify(a.user ?? null);
  return system && !user ? "prompt.system" : user && !system ? "prompt.user" : "prompt";
}

/**
 * Every version of every stage (or one stage) a pipeline's runs used, oldest
 * first, with what changed, when it first ran and how many outputs it made.
 * With `pipeline`, the version it defines now is marked `current` (and listed
 * even if it never ran).
 *
 * @example
 * const history = await stageVersions(db, "ticket-triage", { stage: "extract" });
 * history.map((v) => `${v.version}: ${v.changes.map((c) => c.part).join(", ")}`);
 */
export async function stageVersions(db: Database, pipelineId: string, options: { stage?: string; pipeline?: PipelineDef } = {}): Promise<StageVersionInfo[]> {
  const seen = await stageVersionsSeen(db, pipelineId);
  const counts = await outputCountsByVersion(db, pipelineId);
  const countOf = new Map(counts.map((c) => [`${c.stage_id}@${c.stage_version}`, c]));

  const now = options.pipeline ? planRecord(options.pipeline, planStages(options.pipeline)) : [];
  const currentVersion = new Map(now.map((p) => [p.id, p.version]));
  const rows = seen.map((r) => ({ ...r, first_at: new Date(r.first_at).toISOString(), last_at: new Date(r.last_at).toISOString() }));
  for (const p of now) {
    if (!rows.some((r) => r.stage_id === p.id && r.version === p.version)) {
      rows.push({ stage_id: p.id, version: p.version, parts: p.parts, first_run: "", first_at: "", last_at: "", runs: 0, pos: p.index });
    }
  }

  // Stages in pipeline order; each stage's versions in order of first appearance (never-run current last).
  const order = new Map<string, number>();
  for (const p of now) order.set(p.id, p.index);
  for (const r of rows) if (!order.has(r.stage_id)) order.set(r.stage_id, 1000 + r.pos);
  rows.sort((a, b) => order.get(a.stage_id)! - order.get(b.stage_id)! || a.stage_id.localeCompare(b.stage_id) || byTime(a.first_at, b.first_at));

  const out: StageVersionInfo[] = [];
  for (const r of rows) {
    if (options.stage && r.stage_id !== options.stage) continue;
    const prev = [...out].reverse().find((v) => v.stage === r.stage_id);
    const c = countOf.get(`${r.stage_id}@${r.version}`);
    out.push({
      stage: r.stage_id,
      version: r.version,
      parts: r.parts ?? {},
      changes: prev ? changedParts(prev.parts, r.parts ?? {}) : [],
      previous: prev?.version ?? null,
      firstRunId: r.first_run || null,
      firstRunAt: r.first_at || null,
      lastRunAt: r.last_at || null,
      runs: r.runs,
      outputs: c?.outputs ?? 0,
      items: c?.items ?? 0,
      costUsd: Math.round((c?.cost ?? 0) * 1e6) / 1e6,
      current: currentVersion.get(r.stage_id) === r.version,
    });
  }
  return out;
}

/** Runs never seen sort last (a current definition not run yet). */
function byTime(a: string, b: string): number {
  if (!a || !b) return a ? -1 : b ? 1 : 0;
  return a.localeCompare(b);
}

export interface VersionOutput {
  itemId: string;
  status: string;
  output: unknown;
  costUsd: number;
  runId: string;
  createdAt: string;
}

/**
 * The outputs one version of a stage produced, whichever run made them: old
 * versions stay queryable after the definition moved on.
 *
 * @example
 * const rows = await versionOutputs(db, "ticket-triage", "extract", "3d722d91b684", { limit: 10 });
 */
export async function versionOutputs(db: Database, pipelineId: string, stageId: string, version: string, options: { limit?: number; itemId?: string } = {}): Promise<VersionOutput[]> {
  const rows = await outputsOfVersion(db, pipelineId, stageId, version, { limit: options.limit ?? 20, itemId: options.itemId });
  return rows.map((r) => ({ itemId: r.item_id, status: r.status, output: r.output, costUsd: Number(r.cost_usd), runId: r.run_id, createdAt: new Date(r.created_at).toISOString() }));
}
