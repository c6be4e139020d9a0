import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rerunPipeline } from "../../src/cli/rerun.ts";
import { DeterministicError } from "../../src/core/errors.ts";
import type { ProviderSet } from "../../src/engine/context.ts";
import type { RunSummary } from "../../src/inspect/summary.ts";
import type { CompletionRequest } from "../../src/providers/types.ts";
import { runPipeline } from "../../src/runners/local/index.ts";
import { memoryDatabase, type TestDatabase } from "../../src/testing/databases.ts";
import { demoSlice } from "../e2e/data.ts";
import { demo, EXTRACT_SYSTEM_V2, pricedInProcess, stageRows, variant } from "./helpers.ts";

/**
 * Upstream of the named stage, a rerun keeps the base run's results as they
 * are, dead letters included: `rerun --stage extract` does not retry a ticket
 * classify gave up on. Rerunning classify itself does.
 */
const input = demoSlice(60);
const FAILING = "T-00002";

/** The in-process responder, except that classify requests for one ticket are rejected as invalid. */
function rejectingOne(): { providers: ProviderSet; calls: () => number } {
  const inner = pricedInProcess();
  const provider = inner.providers.get("inprocess");
  return {
    calls: inner.calls,
    providers: {
      ...inner.providers,
      get: () => ({
        name: provider.name,
        complete: async (request: CompletionRequest) => {
          if (request.model === "gpt-4o-mini" && request.messages[0]!.content.includes("Sign in loop")) throw new DeterministicError("400 invalid request");
          return provider.complete(request);
        },
      }),
    },
  };
}

describe("rerun and the base run's dead letters upstream", () => {
  let t: TestDatabase;
  let base: RunSummary;
  beforeAll(async () => {
    t = await memoryDatabase();
    base = await runPipeline({ db: t.db, pipeline: demo, providers: rejectingOne().providers }, input);
  });
  afterAll(async () => {
    await t?.drop();
  });

  it("keeps an upstream failure as the base run left it, with its reason", async () => {
    expect((await stageRows(t.db, base.runId, "classify")).get(FAILING)!.status).toBe("failed_terminal");
    const llm = pricedInProcess();
    const { summary } = await rerunPipeline({ db: t.db, pipeline: variant(demo, "extract", { prompt: { system: EXTRACT_SYSTEM_V2 } }), providers: llm.providers }, { stage: "extract" });
    expect(summary.stages[1]).toMatchObject({ id: "classify", providerCalls: 0, failed: 1 });
    expect(llm.calls()).toBe(summary.stages[2]!.providerCalls);
    expect((await stageRows(t.db, summary.runId, "classify")).get(FAILING)!.status).toBe("failed_terminal");
    expect(summary.items.byStatus.failed_terminal).toBe(base.items.byStatus.failed_terminal);
    const reason = await t.db.rows<{ error_class: string; error_message: string }>(sql`
      SELECT error_class, error_message FROM work WHERE run_id = ${summary.runId} AND stage_id = 'classify' AND item_id = ${FAILING}`);
    expect(reason[0]).toEqual({ error_class: "deterministic", error_message: expect.stringContaining("400 invalid request") });
  });

  it("retries it when the failed stage itself is rerun, and reuses everything else", async () => {
    const llm = pricedInProcess();
    const { summary } = await rerunPipeline({ db: t.db, pipeline: demo, providers: llm.providers }, { stage: "classify", from: base.runId });
    const classify = summary.stages[1]!;
    expect(classify).toMatchObject({ providerCalls: 1, failed: 0, reused: classify.processed - 1 });
    expect((await stageRows(t.db, summary.runId, "classify")).get(FAILING)!.status).toBe("succeeded_unvalidated");
    expect(summary.items.byStatus.failed_terminal).toBeUndefined();
  });
});
