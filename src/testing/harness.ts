import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PipelineDef } from "../core/types.ts";
import type { EngineOptions, ProviderSet } from "../engine/context.ts";
import type { RunSummary } from "../inspect/summary.ts";
import type { Provider } from "../providers/types.ts";
import { runPipeline } from "../runners/local/index.ts";
import type { Database } from "../store/database.ts";
import { targetRows, workOutputs } from "../store/reports.ts";
import { memoryDatabase } from "./databases.ts";
import { createInProcessProvider } from "../providers/inprocess.ts";

export interface TestRun {
  summary: RunSummary;
  db: Database;
  /** Outputs of one stage in this run, by item id. */
  outputs(stageId: string): Promise<Record<string, unknown>>;
  /** Final status of every item at one stage, by item id. */
  statuses(stageId: string): Promise<Record<string, string>>;
  /** Rows of a commit target table, by key. */
  target(table: string): Promise<Record<string, { data: unknown; status: string }>>;
  close(): Promise<void>;
}

/** A ProviderSet that answers every LLM stage with one provider. */
export function singleProvider(provider: Provider, cost: ProviderSet["cost"] = () => 0): ProviderSet {
  return { defaultProvider: provider.name, get: () => provider, cost };
}

/**
 * Run a pipeline in a test, in a few lines: items in, summary and outputs out,
 * on an in-memory database with the in-process provider unless you pass others.
 *
 * @example
 * const run = await runPipelineForTest(pipeline, { items: [{ id: "1", subject: "Refund", body: "..." }] });
 * expect((await run.outputs("classify"))["1"]).toMatchObject({ category: "refund" });
 * await run.close();
 */
export async function runPipelineForTest(
  pipeline: PipelineDef,
  options: { items?: Record<string, unknown>[]; input?: string; db?: Database; providers?: ProviderSet; options?: Partial<EngineOptions> },
): Promise<TestRun> {
  const owned = options.db ? undefined : await memoryDatabase();
  const db = options.db ?? owned!.db;
  let dir: string | undefined;
  let input = options.input;
  if (!input) {
    dir = mkdtempSync(join(tmpdir(), "sluice-test-"));
    input = join(dir, "items.jsonl");
    writeFileSync(input, (options.items ?? []).map((i) => JSON.stringify(i)).join("\n"));
  }
  const providers = options.providers ?? singleProvider(createInProcessProvider());
  try {
    const summary = await runPipeline({ db, pipeline, providers, options: options.options }, input, { fresh: true });
    const stageRows = (stageId: string) => workOutputs(db, summary.runId, stageId);
    return {
      summary,
      db,
      outputs: async (stageId) => Object.fromEntries((await stageRows(stageId)).filter((r) => r.output !== null).map((r) => [r.item_id, r.output])),
      statuses: async (stageId) => Object.fromEntries((await stageRows(stageId)).map((r) => [r.item_id, r.status])),
      target: async (table) => {
        const rows = await targetRows(db, table);
        return Object.fromEntries(rows.map((r) => [r.key, { data: r.data, status: r.status }]));
      },
      close: async () => {
        if (dir) rmSync(dir, { recursive: true, force: true });
        if (owned) await owned.drop();
      },
    };
  } catch (err) {
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (owned) await owned.drop();
    throw err;
  }
}
