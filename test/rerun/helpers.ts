import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { definePipeline } from "../../src/core/define.ts";
import { runCli } from "../e2e/cli.ts";
import { isLlmStage, type PipelineDef, type PromptTemplate } from "../../src/core/types.ts";
import type { ProviderSet } from "../../src/engine/context.ts";
import { costOf } from "../../src/providers/index.ts";
import type { Database } from "../../src/store/database.ts";
import { createInProcessProvider } from "../../src/providers/inprocess.ts";
import { ROOT } from "../e2e/cli.ts";
import demo from "../../pipelines/ticket-triage.ts";

export { demo };

/** The demo's extract prompt with another system line: severity is then guessed differently for tickets that do not say. */
export const EXTRACT_SYSTEM_V2 = "Extract the fields of a support ticket carefully. Use null when the ticket does not state a field.";
/** A classify prompt with extra cue words: many tickets change category, some into extract's gate and some out of it. */
export const CLASSIFY_USER_V2 = "Subject: {{item.subject}}\n\n{{item.body}}\n\n(a bug or crash? an account or login problem?)";

export interface StagePatch {
  prompt?: Partial<PromptTemplate>;
  model?: string;
  params?: Record<string, unknown>;
  codeVersion?: string;
  mode?: "realtime" | "batch" | "auto";
}

/** The pipeline with one stage changed (same pipeline id, so outputs are shared with the original). */
export function variant(pipeline: PipelineDef, stageId: string, patch: StagePatch): PipelineDef {
  return definePipeline({
    ...pipeline,
    stages: pipeline.stages.map((s) => {
      if (s.id !== stageId) return s;
      const changed = { ...s, ...patch } as typeof s;
      if (patch.prompt && isLlmStage(s)) (changed as typeof s).prompt = { ...s.prompt, ...patch.prompt };
      return changed;
    }),
  });
}

/**
 * Write a pipeline file that changes one stage of the demo, for the CLI to
 * load by path (`sluice rerun /tmp/.../pipeline.ts --stage extract`).
 */
export function writeDemoVariant(stageId: string, patch: StagePatch): string {
  const dir = mkdtempSync(join(tmpdir(), "sluice-variant-"));
  const file = join(dir, "pipeline.mts");
  const demoPath = JSON.stringify(join(ROOT, "pipelines", "ticket-triage.ts"));
  const definePath = JSON.stringify(join(ROOT, "src", "core", "define.ts"));
  writeFileSync(
    file,
    `import demo from ${demoPath};
import { definePipeline } from ${definePath};
const patch = ${JSON.stringify(patch)};
export default definePipeline({
  ...demo,
  stages: demo.stages.map((s) => (s.id === ${JSON.stringify(stageId)} ? { ...s, ...patch, ...(patch.prompt ? { prompt: { ...s.prompt, ...patch.prompt } } : {}) } : s)),
});
`,
  );
  return file;
}

/** The in-process responder with list prices, and a counter of the requests it answered. */
export function pricedInProcess(): { providers: ProviderSet; calls: () => number } {
  const provider = createInProcessProvider();
  return { providers: { defaultProvider: provider.name, get: () => provider, cost: costOf }, calls: () => provider.calls };
}

export interface StageRow {
  status: string;
  reused: boolean;
  outputHash: string | null;
  output: unknown;
}

/** Every work row of one stage of a run, by item id. */
export async function stageRows(db: Database, runId: string, stageId: string): Promise<Map<string, StageRow>> {
  const rows = await db.rows<{ item_id: string; status: string; reused: boolean; output_hash: string | null; output: unknown }>(sql`
    SELECT w.item_id, w.status, w.reused, o.output_hash, o.output FROM work w LEFT JOIN stage_outputs o ON o.id = w.output_id
    WHERE w.run_id = ${runId} AND w.stage_id = ${stageId}`);
  return new Map(rows.map((r) => [r.item_id, { status: r.status, reused: r.reused, outputHash: r.output_hash, output: r.output }]));
}

export interface TargetRow {
  data: Record<string, unknown>;
  status: string;
  committedAt: string;
  runId: string;
}

/** The demo's commit target, by key. */
export async function targetRows(db: Database, table = "ticket_triage"): Promise<Map<string, TargetRow>> {
  const rows = await db.rows<{ key: string; data: Record<string, unknown>; status: string; committed_at: string; run_id: string }>(sql`
    SELECT key, data, status, committed_at::text AS committed_at, run_id FROM ${sql.identifier(table)}`);
  return new Map(rows.map((r) => [r.key, { data: r.data, status: r.status, committedAt: r.committed_at, runId: r.run_id }]));
}

/** Active target rows as `key → data`, for comparing a rerun's table with a from-scratch run's. */
export function activeData(rows: Map<string, TargetRow>): Record<string, unknown> {
  return Object.fromEntries([...rows].filter(([, r]) => r.status === "active").map(([k, r]) => [k, r.data]).sort(([a], [b]) => String(a).localeCompare(String(b))));
}

/** Row counts of the tables a run writes, to prove that something wrote nothing. */
export async function tableCounts(db: Database): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of ["runs", "run_items", "work", "stage_outputs", "attempts", "request_cache"]) {
    const rows = await db.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM ${sql.identifier(table)}`);
    out[table] = rows[0]!.n;
  }
  return out;
}

/** Run `sluice <args>` in a child process from the repository root, as a user would. */
export function sluice(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCli(args, env);
}

/** What `fn` writes to stdout (a CLI function's report), instead of printing it. */
export async function captureStdout<T>(fn: () => Promise<T>): Promise<{ value: T; stdout: string }> {
  const write = process.stdout.write;
  let stdout = "";
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  try {
    return { value: await fn(), stdout };
  } finally {
    process.stdout.write = write;
  }
}
