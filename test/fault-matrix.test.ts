import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { definePipeline, defineStage } from "../src/core/define.ts";
import type { JsonObject, JsonSchema } from "../src/core/types.ts";
import { costOf, createProvider } from "../src/providers/index.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { runPipelineForTest } from "../src/testing/harness.ts";

/**
 * The fault matrix: 10% 429, 5% 500, 2% 529/503, 1% timeouts, 2% malformed
 * JSON, 1% truncation on realtime calls; partial failures inside batches and
 * one expired batch. Every item must end in a final state, the counts must
 * add up, and no successful request may be paid for twice.
 */
const label: JsonSchema = {
  type: "object", additionalProperties: false, required: ["category", "confidence"],
  properties: { category: { enum: ["billing", "bug", "other"] }, confidence: { type: "number" } },
};
const fields: JsonSchema = {
  type: "object", additionalProperties: false, required: ["order_id", "summary"],
  properties: { order_id: { type: ["string", "null"] }, summary: { type: "string" } },
};

const pipeline = definePipeline({
  id: "faults",
  source: { key: "id" },
  stages: [
    defineStage({ id: "classify", kind: "classify", provider: "openai", mode: "realtime", model: "gpt-4o-mini", prompt: { user: "{{item.text}}" }, output: { name: "Label", schema: label } }),
    defineStage({
      id: "extract", kind: "extract", provider: "anthropic", mode: "batch", model: "claude-haiku-4-5",
      when: ({ outputs }) => (outputs.classify as { category: string }).category !== "other",
      prompt: { user: "Extract from: {{item.text}}" }, output: { name: "Fields", schema: fields },
    }),
    defineStage({ id: "commit", kind: "commit", target: { table: "faults_out", key: "id" }, row: ({ itemId, outputs }) => ({ id: itemId, ...(outputs.extract as JsonObject) }) }),
  ],
});

const texts = ["charged twice on invoice ORD-{n}", "the app crashes with error {n}", "just saying hello {n}", "bug in export {n}, it fails", "billing question about invoice {n}"];
const items = Array.from({ length: 200 }, (_, i) => ({ id: `f${String(i).padStart(3, "0")}`, text: texts[i % texts.length]!.replace("{n}", String(10_000 + i)) }));

let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({
    port: 0,
    seed: 7,
    config: {
      faults: { rateLimit: 0.1, serverError: 0.05, overloaded: 0.02, timeout: 0.01, malformedJson: 0.02, truncated: 0.01 },
      timeoutHoldMs: 300,
      batch: { failureRate: 0.1, expireBatches: [1], expireFraction: 0.5, pollsToComplete: 2 },
    },
  });
});
afterAll(async () => {
  await sim?.close();
});

describe("fault matrix", () => {
  it("ends every item in a final state, counts add up, nothing paid twice", async () => {
    const openai = createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, env: {}, timeoutMs: 2_000 });
    const anthropic = createProvider({ provider: "anthropic", baseURL: sim.anthropicBaseURL, env: {}, timeoutMs: 2_000 });
    const run = await runPipelineForTest(pipeline, {
      items,
      providers: { defaultProvider: "openai", get: (n) => (n === "anthropic" ? anthropic : openai), cost: costOf },
      options: { backoffBaseMs: 20, backoffMaxMs: 300, maxAttempts: 8, batchPollMs: 10, batchPollMaxMs: 50 },
    });
    try {
      const stats = sim.stats();
      // The matrix really happened.
      for (const kind of ["rate_limit", "server_error", "overloaded", "timeout", "malformed_json", "truncated"]) {
        expect(stats.faults[kind as keyof typeof stats.faults] ?? 0, kind).toBeGreaterThan(0);
      }
      expect(stats.batches.expired).toBeGreaterThanOrEqual(1);
      expect(stats.batches.created).toBeGreaterThanOrEqual(2);

      const byStatus = run.summary.items.byStatus;
      expect(Object.values(byStatus).reduce((a, b) => a + b, 0)).toBe(items.length);
      for (const inFlight of ["queued", "processing", "failed_retryable"]) expect(byStatus[inFlight], inFlight).toBeUndefined();
      expect(byStatus.committed).toBeGreaterThan(100);

      // No successful request was paid for twice.
      const paidTwice = Object.entries(stats.billedByRequestHash).filter(([, n]) => n > 1);
      expect(paidTwice).toEqual([]);
      const dupSuccess = await run.db.rows(sql`
        SELECT stage_id, item_id FROM attempts WHERE run_id = ${run.summary.runId} AND error_class IS NULL
        GROUP BY 1, 2 HAVING count(*) > 1`);
      expect(dupSuccess).toEqual([]);

      // Dead letters carry their class and the provider's message.
      const dead = await run.db.rows<{ error_class: string; error_message: string }>(sql`
        SELECT error_class, error_message FROM work WHERE run_id = ${run.summary.runId} AND status = 'failed_terminal'`);
      for (const d of dead) {
        expect(["transient", "deterministic", "quality"]).toContain(d.error_class);
        expect(d.error_message.length).toBeGreaterThan(5);
      }
      // Batch calls are recorded at batch price.
      const modes = await run.db.rows<{ mode: string; n: number }>(sql`
        SELECT mode, count(*)::int AS n FROM attempts WHERE run_id = ${run.summary.runId} AND stage_id = 'extract' GROUP BY 1`);
      expect(modes.find((m) => m.mode === "batch")?.n).toBeGreaterThan(50);
    } finally {
      await run.close();
    }
  }, 180_000);
});
