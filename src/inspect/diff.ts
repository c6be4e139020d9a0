import { SluiceError } from "../core/errors.ts";
import type { Database } from "../store/database.ts";
import { finalItemStatuses, workOutputHashes, workOutputs, type WorkOutputHash } from "../store/reports.ts";
import { requireRun, type RunRow } from "../store/runs.ts";
import { carriedPairs, recordedReads } from "../core/dag.ts";
import { enumFields, labelTable, type LabelTable } from "./labels.ts";

/**
 * What changed between two runs of a pipeline, stage by stage, from their
 * work rows and the output rows they point at. An item's place at a stage is
 * one of: not reached (no work row), `gated_out`, or reached with a status
 * and (usually) an output.
 */

/** An item's state at one stage of one run. */
export interface ItemAtStage {
  status: string;
  output: unknown;
  /** Why there is no output (`sluice compare`, when the current definition failed on the item). */
  error?: string;
}

export interface ChangedItem {
  itemId: string;
  /** Null when the item did not reach the stage in that run. */
  before: ItemAtStage | null;
  after: ItemAtStage | null;
}

export interface StageDiff {
  id: string;
  kind: string;
  versionA: string | null;
  versionB: string | null;
  /** Items of both runs at this stage in either (reached or gated out). */
  items: number;
  /** Items with an output in both runs whose outputs differ. */
  outputChanged: number;
  /** Items whose gate result changed: `reached`, `gated_out` or `not_reached`, as `from→to` counts. */
  gateChanged: number;
  gate: Record<string, number>;
  /** Items whose status at this stage changed, as `from→to` counts. */
  stateChanged: number;
  states: Record<string, number>;
  /** For classify-like stages (enum fields in the output): label transitions per field. */
  labels?: LabelTable[];
  /** A few changed items (lowest ids first) with before and after. */
  sample: ChangedItem[];
}

export interface RunDiff {
  pipeline: string;
  runA: string;
  runB: string;
  /** Items of each run, and how many both have: only those are compared. */
  items: { a: number; b: number; common: number };
  /** Items whose final state (their status at the last stage they reached) changed, as `from→to` counts. */
  final: { changed: number; transitions: Record<string, number> };
  stages: StageDiff[];
}

const NOT_REACHED = "not_reached";
const gateOf = (status: string | undefined) => (status === undefined ? NOT_REACHED : status === "gated_out" ? "gated_out" : "reached");
const bump = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);

async function outputsOf(db: Database, runId: string, stageId: string, itemIds?: string[]): Promise<Map<string, ItemAtStage>> {
  const rows = await workOutputs(db, runId, stageId, itemIds);
  return new Map(rows.map((r) => [r.item_id, { status: r.status, output: r.output ?? null }]));
}

async function finalStates(db: Database, run: RunRow): Promise<Map<string, string>> {
  const rows = await finalItemStatuses(db, run.id, carriedPairs(recordedReads(run.stages)));
  return new Map(rows.map((r) => [r.item_id, r.status]));
}

function transitions(pairs: Iterable<[string | undefined, string | undefined]>): { changed: number; table: Record<string, number> } {
  const table: Record<string, number> = {};
  let changed = 0;
  for (const [a, b] of pairs) {
    if (a === b) continue;
    changed++;
    bump(table, `${a ?? NOT_REACHED}→${b ?? NOT_REACHED}`);
  }
  return { changed, table };
}

/**
 * Compare two runs of one pipeline: per stage, how many items changed output,
 * gate result or state; for classify-like stages a from→to label table; and a
 * sample of changed items with before and after.
 *
 * @example
 * const diff = await diffRuns(db, baseRunId, rerunId, { stage: "classify" });
 * diff.stages[0].labels?.[0].table; // [{ from: "other", to: "refund", count: 12 }, ...]
 */
export async function diffRuns(db: Database, runA: string, runB: string, options: { stage?: string; sample?: number } = {}): Promise<RunDiff> {
  // One after the other, so that with both missing the error names runA, as it always did.
  const a = await requireRun(db, runA);
  const b = await requireRun(db, runB);
  if (a.pipeline !== b.pipeline) throw new SluiceError(`runs ${runA} (${a.pipeline}) and ${runB} (${b.pipeline}) belong to different pipelines`);
  const stageIds = [...new Set([...b.stages.map((s) => s.id), ...a.stages.map((s) => s.id)])];
  if (options.stage && !stageIds.includes(options.stage)) throw new SluiceError(`neither run has a stage "${options.stage}" (stages: ${stageIds.join(", ")})`);

  const [workA, workB, finalA, finalB] = await Promise.all([workOutputHashes(db, runA, options.stage), workOutputHashes(db, runB, options.stage), finalStates(db, a), finalStates(db, b)]);
  // Only items of both runs are compared: an item one run never had (two increments of a source) did not change.
  const both = new Set([...finalA.keys()].filter((id) => finalB.has(id)));
  const final = transitions([...both].map((id) => [finalA.get(id), finalB.get(id)]));

  const stages: StageDiff[] = [];
  for (const id of options.stage ? [options.stage] : stageIds) {
    const inBoth = (w: WorkOutputHash) => w.stage_id === id && both.has(w.item_id);
    stages.push(await diffStage(db, a, b, id, workA.filter(inBoth), workB.filter(inBoth), both, options.sample ?? 5));
  }
  return { pipeline: a.pipeline, runA, runB, items: { a: finalA.size, b: finalB.size, common: both.size }, final: { changed: final.changed, transitions: final.table }, stages };
}

async function diffStage(db: Database, a: RunRow, b: RunRow, id: string, rowsA: WorkOutputHash[], rowsB: WorkOutputHash[], both: ReadonlySet<string>, sampleSize: number): Promise<StageDiff> {
  const planA = a.stages.find((s) => s.id === id);
  const planB = b.stages.find((s) => s.id === id);
  const byA = new Map(rowsA.map((r) => [r.item_id, r]));
  const byB = new Map(rowsB.map((r) => [r.item_id, r]));
  const ids = [...new Set([...byA.keys(), ...byB.keys()])].sort();

  let outputChanged = 0;
  const changedIds: string[] = [];
  for (const itemId of ids) {
    const x = byA.get(itemId);
    const y = byB.get(itemId);
    const outputDiffers = Boolean(x?.output_hash && y?.output_hash && x.output_hash !== y.output_hash);
    if (outputDiffers) outputChanged++;
    if (outputDiffers || x?.status !== y?.status) changedIds.push(itemId);
  }
  const gate = transitions(ids.map((i) => [gateOf(byA.get(i)?.status), gateOf(byB.get(i)?.status)]));
  const states = transitions(ids.map((i) => [byA.get(i)?.status, byB.get(i)?.status]));

  const sampleIds = changedIds.slice(0, sampleSize);
  const [sampleA, sampleB] = sampleIds.length
    ? await Promise.all([outputsOf(db, a.id, id, sampleIds), outputsOf(db, b.id, id, sampleIds)])
    : [new Map<string, ItemAtStage>(), new Map<string, ItemAtStage>()];
  const sample = sampleIds.map((itemId) => ({ itemId, before: sampleA.get(itemId) ?? null, after: sampleB.get(itemId) ?? null }));

  const fields = enumFields((planB ?? planA)!.kind, (planB?.parts ?? planA?.parts ?? {}) as Record<string, unknown>);
  let labels: LabelTable[] | undefined;
  if (fields.length) {
    const [outA, outB] = await Promise.all([outputsOf(db, a.id, id), outputsOf(db, b.id, id)]);
    const common = (m: Map<string, ItemAtStage>) => new Map([...m].filter(([itemId]) => both.has(itemId)));
    labels = labelTable(fields, common(outA), common(outB));
  }
  return {
    id,
    kind: (planB ?? planA)!.kind,
    versionA: planA?.version ?? null,
    versionB: planB?.version ?? null,
    items: ids.length,
    outputChanged,
    gateChanged: gate.changed,
    gate: gate.table,
    stateChanged: states.changed,
    states: states.table,
    labels,
    sample,
  };
}
