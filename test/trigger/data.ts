import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { sql } from "drizzle-orm";
import { definePipeline } from "../../src/core/define.ts";
import type { CommitStage, PipelineDef } from "../../src/core/types.ts";
import type { Database } from "../../src/store/index.ts";
import mini from "../fixtures/pipelines/mini.ts";

/** Test data and pipelines shared by the Trigger.dev runner suites. */

export interface TempDir {
  path: string;
  file(name: string, lines: string[]): string;
  remove(): void;
}

export function tempDir(): TempDir {
  const path = mkdtempSync(join(tmpdir(), "sluice-trigger-"));
  return {
    path,
    file(name, lines) {
      const file = join(path, name);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, lines.join("\n"));
      return file;
    },
    remove: () => rmSync(path, { recursive: true, force: true }),
  };
}

/**
 * Items for the mini pipeline: some empty (filtered out), texts distinct per
 * `tag` so no two items, and no two data sets, send the same model request
 * (provider calls then count items, not cache misses).
 */
export function miniItems(tag: string, n: number): string[] {
  const words = ["refund my invoice", "the app crashes", "hello there", "billing question", "bug in export", "general feedback"];
  return Array.from({ length: n }, (_, i) => {
    const id = `i${String(i).padStart(5, "0")}`;
    const text = i % 9 === 4 ? "" : `${words[i % words.length]} #${tag}-${i}`;
    return JSON.stringify({ id, text });
  });
}

/** The mini pipeline under another id and commit table, so several runs can share one store without reusing each other's work. */
export function miniVariant(name: string, extra: Partial<PipelineDef> = {}): PipelineDef {
  const stages = mini.stages.map((s) => (s.kind === "commit" ? ({ ...s, target: { ...(s as CommitStage).target, table: `mini_${name.replace(/-/g, "_")}_out` } } as CommitStage) : s));
  return definePipeline({ ...mini, id: `mini-${name}`, stages, ...extra });
}

export function commitTable(pipeline: PipelineDef): string {
  return (pipeline.stages.find((s) => s.kind === "commit") as CommitStage).target.table;
}

/** Rows of a commit target: key -> data and status (what a user consumes). */
export async function targetRows(db: Database, table: string): Promise<Record<string, { data: unknown; status: string }>> {
  const rows = await db.rows<{ key: string; data: unknown; status: string }>(sql`SELECT key, data, status FROM ${sql.identifier(table)} ORDER BY key`);
  return Object.fromEntries(rows.map((r) => [r.key, { data: r.data, status: r.status }]));
}

/** Final status of every (stage, item) of a run. */
export async function workStatuses(db: Database, runId: string): Promise<Record<string, string>> {
  const rows = await db.rows<{ stage_id: string; item_id: string; status: string }>(sql`
    SELECT stage_id, item_id, status FROM work WHERE run_id = ${runId} ORDER BY stage_index, item_id`);
  return Object.fromEntries(rows.map((r) => [`${r.stage_id}/${r.item_id}`, r.status]));
}
