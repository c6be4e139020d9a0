import { randomBytes } from "node:crypto";
import type { PipelineDef } from "../core/types.ts";
import { conflictingDuplicateReason, duplicateReason, preview, readSource, sourceFingerprint } from "../sources/index.ts";
import type { Database } from "../store/database.ts";
import { findOpenRun, insertItems, insertRejectedRows, insertRun, lockPipelineRuns, markLoaded, type LoadedItem, type RejectedRow, type RunRow } from "../store/runs.ts";
import type { RunContext, StagePlan } from "./context.ts";
import { planRecord } from "./plan.ts";

/** Sortable, unique run ids: time first, then randomness. */
export function newRunId(): string {
  return `run_${Date.now().toString(36)}${randomBytes(4).toString("hex")}`;
}

/** The stage versions of a plan as one string: runs over the same definitions have the same. */
export function versionsOf(plan: readonly StagePlan[]): string {
  return plan.map((p) => `${p.id}@${p.version}`).join(",");
}

/**
 * Start a run, or continue the unfinished one for the same pipeline, stage
 * versions and input file: running the same command again after a crash picks
 * up where it stopped, and two processes started together share one run. The
 * lookup and the insert happen under a transaction-scoped advisory lock.
 */
export async function createOrContinueRun(db: Database, pipeline: PipelineDef, plan: StagePlan[], inputPath: string, options: Record<string, unknown> = {}): Promise<{ run: RunRow; continued: boolean }> {
  const fingerprint = await sourceFingerprint(inputPath);
  const versions = versionsOf(plan);
  return db.transaction(async (tx) => {
    await lockPipelineRuns(tx, pipeline.id);
    const open = await findOpenRun(tx, { pipelineId: pipeline.id, fingerprint, versions, mode: String(options.mode ?? "run") });
    if (open && !options.fresh) return { run: open, continued: true };
    const run = await insertRun(tx, {
      id: newRunId(),
      pipelineId: pipeline.id,
      inputPath,
      fingerprint,
      stages: planRecord(pipeline, plan),
      options: { mode: "run", ...options, versions },
    });
    return { run, continued: false };
  });
}

const LOAD_BATCH = 1000;

/**
 * Read the source into `run_items` (and bad or duplicate rows into
 * `rejected_rows`). Idempotent: a load cut short is simply done again, and
 * rows already recorded are skipped.
 */
export async function loadSource(ctx: RunContext, inputPath: string, onRows?: (n: number) => void): Promise<number> {
  const first = ctx.plan[0]!;
  let items: LoadedItem[] = [];
  let rejected: RejectedRow[] = [];
  let rowsRead = 0;
  // The rows' text, kept for a batch only: a row the store finds repeating an earlier id with other content is quarantined with it.
  let raws = new Map<number, () => string>();
  const insert = async (batch: LoadedItem[], bad: RejectedRow[], batchRaws: Map<number, () => string>) => {
    for (const r of await insertItems(ctx.db, ctx.runId, first, batch)) {
      bad.push(
        r.same
          ? { line: r.line, item_id: r.item_id, state: "deduplicated", reason: duplicateReason(r.item_id, r.first_line), raw: null }
          : { line: r.line, item_id: r.item_id, state: "quarantined", reason: conflictingDuplicateReason(r.item_id, r.first_line), raw: preview(batchRaws.get(r.line)?.() ?? "") },
      );
    }
    await insertRejectedRows(ctx.db, ctx.runId, bad);
    onRows?.(batch.length + bad.length);
  };
  // One batch is written while the next is read: the database inserts while
  // this process parses and checks rows.
  let writing: Promise<void> = Promise.resolve();
  const write = async () => {
    const batch = items;
    const bad = rejected;
    const batchRaws = raws;
    items = [];
    rejected = [];
    raws = new Map();
    await writing;
    writing = insert(batch, bad, batchRaws);
    // A failed write surfaces at the next await of `writing`, not as an unhandled rejection.
    writing.catch(() => {});
  };
  // Duplicate ids are found by the store (`insertItems`), so the reader remembers none.
  for await (const record of readSource(inputPath, ctx.pipeline.source, { signal: ctx.signal, findDuplicates: false })) {
    rowsRead++;
    if (record.kind === "item") {
      items.push({ item_id: record.itemId, line: record.line, content_hash: record.contentHash, data: record.item });
      if (record.raw) raws.set(record.line, record.raw);
    } else if (record.kind === "duplicate") {
      rejected.push({ line: record.line, item_id: record.itemId, state: "deduplicated", reason: duplicateReason(record.itemId, record.firstLine), raw: null });
    } else {
      rejected.push({ line: record.line, item_id: record.itemId ?? null, state: "quarantined", reason: record.reason, raw: record.raw ?? null });
    }
    if (items.length + rejected.length >= LOAD_BATCH) await write();
  }
  await write();
  await writing;
  await markLoaded(ctx.db, ctx.runId, rowsRead);
  return rowsRead;
}
