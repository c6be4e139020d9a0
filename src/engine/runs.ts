import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import type { PipelineDef } from "../core/types.ts";
import { readSource, sourceFingerprint } from "../sources/index.ts";
import type { Database } from "../store/database.ts";
import type { RunContext, StagePlan } from "./context.ts";
import { planRecord } from "./plan.ts";

export interface RunRow {
  id: string;
  pipeline: string;
  status: "running" | "finished" | "failed";
  input_path: string | null;
  input_fingerprint: string | null;
  stages: (StagePlan & { parts: Record<string, unknown> })[];
  options: Record<string, unknown>;
  loaded_at: string | null;
  rows_read: number;
  created_at: string;
  finished_at: string | null;
}

/** Sortable, unique run ids: time first, then randomness. */
export function newRunId(): string {
  return `run_${Date.now().toString(36)}${randomBytes(4).toString("hex")}`;
}

export async function getRun(db: Database, runId: string): Promise<RunRow | undefined> {
  const rows = await db.rows<RunRow>(sql`SELECT * FROM runs WHERE id = ${runId}`);
  return rows[0];
}

/**
 * Start a run, or continue the unfinished one for the same pipeline, stage
 * versions and input file: running the same command again after a crash picks
 * up where it stopped, and two processes started together share one run. The
 * lookup and the insert happen under a transaction-scoped advisory lock.
 */
export async function createOrContinueRun(db: Database, pipeline: PipelineDef, plan: StagePlan[], inputPath: string, options: Record<string, unknown> = {}): Promise<{ run: RunRow; continued: boolean }> {
  const fingerprint = await sourceFingerprint(inputPath);
  const versions = plan.map((p) => `${p.id}@${p.version}`).join(",");
  return db.transaction(async (tx) => {
    await tx.rows(sql`SELECT pg_advisory_xact_lock(hashtext(${`sluice:run:${pipeline.id}`}))`);
    const open = await tx.rows<RunRow>(sql`
      SELECT * FROM runs WHERE pipeline = ${pipeline.id} AND status = 'running'
        AND input_fingerprint = ${fingerprint} AND options->>'versions' = ${versions}
        AND options->>'mode' = ${String(options.mode ?? "run")}
      ORDER BY created_at DESC LIMIT 1`);
    if (open[0] && !options.fresh) return { run: open[0], continued: true };
    const id = newRunId();
    const stages = planRecord(pipeline, plan);
    const rows = await tx.rows<RunRow>(sql`
      INSERT INTO runs (id, pipeline, status, input_path, input_fingerprint, stages, options)
      VALUES (${id}, ${pipeline.id}, 'running', ${inputPath}, ${fingerprint}, ${JSON.stringify(stages)}::jsonb,
        ${JSON.stringify({ mode: "run", ...options, versions })}::jsonb)
      RETURNING *`);
    return { run: rows[0]!, continued: false };
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
  let items: { item_id: string; line: number; content_hash: string; data: unknown }[] = [];
  let rejected: { line: number; item_id: string | null; state: string; reason: string; raw: string | null }[] = [];
  let rowsRead = 0;
  const insert = async (batch: typeof items, bad: typeof rejected) => {
    if (batch.length) {
      // Each item is queued for the first stage as it is recorded, in the same statement.
      await ctx.db.rows(sql`
        WITH loaded AS (
          INSERT INTO run_items (run_id, item_id, line, content_hash, data)
          SELECT ${ctx.runId}, x.item_id, x.line, x.content_hash, x.data
          FROM jsonb_to_recordset(${JSON.stringify(batch)}::jsonb) AS x(item_id text, line int, content_hash text, data jsonb)
          ON CONFLICT DO NOTHING
          RETURNING item_id)
        INSERT INTO work (run_id, stage_index, item_id, stage_id, status)
        SELECT ${ctx.runId}, 0, item_id, ${first.id}, 'queued' FROM loaded
        ON CONFLICT DO NOTHING`);
    }
    if (bad.length) {
      await ctx.db.rows(sql`
        INSERT INTO rejected_rows (run_id, line, item_id, state, reason, raw)
        SELECT ${ctx.runId}, x.line, x.item_id, x.state, x.reason, x.raw
        FROM jsonb_to_recordset(${JSON.stringify(bad)}::jsonb) AS x(line int, item_id text, state text, reason text, raw text)
        ON CONFLICT DO NOTHING`);
    }
    onRows?.(batch.length + bad.length);
  };
  // One batch is written while the next is read: the database inserts while
  // this process parses and checks rows.
  let writing: Promise<void> = Promise.resolve();
  const write = async () => {
    const batch = items;
    const bad = rejected;
    items = [];
    rejected = [];
    await writing;
    writing = insert(batch, bad);
    // A failed write surfaces at the next await of `writing`, not as an unhandled rejection.
    writing.catch(() => {});
  };
  for await (const record of readSource(inputPath, ctx.pipeline.source, { signal: ctx.signal })) {
    rowsRead++;
    if (record.kind === "item") {
      items.push({ item_id: record.itemId, line: record.line, content_hash: record.contentHash, data: record.item });
    } else if (record.kind === "duplicate") {
      rejected.push({ line: record.line, item_id: record.itemId, state: "deduplicated", reason: `identical to line ${record.firstLine} (same id "${record.itemId}", same content); processed once`, raw: null });
    } else {
      rejected.push({ line: record.line, item_id: record.itemId ?? null, state: "quarantined", reason: record.reason, raw: record.raw ?? null });
    }
    if (items.length + rejected.length >= LOAD_BATCH) await write();
  }
  await write();
  await writing;
  await ctx.db.rows(sql`UPDATE runs SET loaded_at = now(), rows_read = ${rowsRead} WHERE id = ${ctx.runId}`);
  return rowsRead;
}

export async function finishRun(db: Database, runId: string): Promise<void> {
  await db.rows(sql`UPDATE runs SET status = 'finished', finished_at = coalesce(finished_at, now()) WHERE id = ${runId}`);
}

export async function failRun(db: Database, runId: string, error: string): Promise<void> {
  await db.rows(sql`UPDATE runs SET status = 'failed', error = ${error}, finished_at = now() WHERE id = ${runId}`);
}
