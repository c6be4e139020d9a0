import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { definePipeline, defineStage } from "../src/core/define.ts";
import { DeterministicError, TransientError } from "../src/core/errors.ts";
import type { JsonSchema } from "../src/core/types.ts";
import type { ProviderSet } from "../src/engine/context.ts";
import type { BatchApi, CompletionRequest, Provider } from "../src/providers/types.ts";
import { runPipeline } from "../src/runners/local/index.ts";
import { memoryDatabase } from "../src/testing/databases.ts";
import { runPipelineForTest } from "../src/testing/harness.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";

const schema: JsonSchema = {
  type: "object", additionalProperties: false, required: ["category", "confidence"],
  properties: { category: { enum: ["billing", "bug", "other"] }, confidence: { type: "number" } },
};
const classify = (extra: object = {}) =>
  defineStage({ id: "classify", kind: "classify", model: "gpt-4o-mini", prompt: { user: "{{item.text}}" }, output: { name: "Label", schema }, ...extra });
const items = [
  { id: "a", text: "invoice charged twice" },
  { id: "b", text: "the app crashes" },
  { id: "c", text: "invoice charged twice" }, // same request as a
];
const set = (provider: Provider, endpoint?: string): ProviderSet => ({ defaultProvider: "p", get: () => provider, cost: () => 0.001, endpointOf: endpoint ? () => endpoint : undefined });

describe("engine regressions", () => {
  it("never reuses answers from one endpoint (a simulator) as answers of another (the real API)", async () => {
    const t = await memoryDatabase();
    const pipeline = definePipeline({ id: "endpoints", source: { key: "id" }, stages: [classify()] });
    const simulated = createInProcessProvider();
    const real = createInProcessProvider();
    try {
      const first = await runPipelineForTest(pipeline, { items, db: t.db, providers: set(simulated, "openai@simulator") });
      expect(first.summary.stages[0]!.providerCalls).toBe(2); // a and c share one request
      const second = await runPipelineForTest(pipeline, { items, db: t.db, providers: set(real, "openai") });
      expect(real.calls).toBe(2);
      expect(second.summary.stages[0]!.reused).toBe(1);
      const third = await runPipelineForTest(pipeline, { items, db: t.db, providers: set(real, "openai") });
      expect(third.summary.stages[0]!.providerCalls).toBe(0);
    } finally {
      await t.drop();
    }
  });

  it("keeps provider batches of two endpoints apart when both hand out the same batch id", async () => {
    // Batch ids are unique per provider account only: two endpoints may both say "batch_1".
    const fakeBatches = (): BatchApi & { answered: Map<string, CompletionRequest[]> } => {
      const inner = createInProcessProvider();
      const answered = new Map<string, CompletionRequest[]>();
      return {
        answered,
        maxRequests: 100, maxBytes: 1 << 20,
        submit: async (requests) => { answered.set("batch_1", requests); return { batchId: "batch_1" }; },
        poll: async () => ({ status: "ended", counts: { succeeded: answered.get("batch_1")!.length, errored: 0, processing: 0 } }),
        results: async function* (batchId) {
          for (const r of answered.get(batchId)!) yield { customId: r.customId, ok: true as const, result: await inner.complete(r) };
        },
        cancel: async () => {},
      };
    };
    const inner = createInProcessProvider();
    const providers: Record<string, Provider> = { openai: { name: "openai", complete: inner.complete, batch: fakeBatches() }, anthropic: { name: "anthropic", complete: inner.complete, batch: fakeBatches() } };
    const set2: ProviderSet = { defaultProvider: "openai", get: (n) => providers[n]!, cost: () => 0.001, endpointOf: (n) => `${n}@https://${n}.example` };
    const again = defineStage({ id: "again", kind: "classify", model: "gpt-4o-mini", provider: "anthropic", mode: "batch", prompt: { user: "again: {{item.text}}" }, output: { name: "Label", schema } });
    const pipeline = definePipeline({ id: "two-endpoints", source: { key: "id" }, stages: [classify({ provider: "openai", mode: "batch" }), again] });
    const run = await runPipelineForTest(pipeline, { items, providers: set2, options: { batchPollMs: 5, batchPollMaxMs: 10 } });
    try {
      expect(run.summary.stages.map((s) => s.batchCalls)).toEqual([2, 2]);
      expect(Object.values(await run.statuses("again")).every((s) => s === "succeeded_unvalidated")).toBe(true);
    } finally {
      await run.close();
    }
  });

  it("duplicates sharing an answer from another chunk's call all get the output", async () => {
    // Chunks of two, run at once: c leads the second chunk's copy of a's request, which is still in flight in the first; d follows c.
    const dupes = [
      { id: "a", text: "invoice charged twice" },
      { id: "b", text: "the app crashes" },
      { id: "c", text: "invoice charged twice" },
      { id: "d", text: "invoice charged twice" },
    ];
    const provider = createInProcessProvider({ latencyMs: 100 });
    const pipeline = definePipeline({ id: "dup-chunks", source: { key: "id" }, stages: [classify()] });
    const run = await runPipelineForTest(pipeline, { items: dupes, providers: set(provider), options: { chunkSize: 2 } });
    try {
      expect(provider.calls).toBe(2);
      const rows = await run.db.rows<{ item_id: string; status: string; has_output: boolean }>(sql`
        SELECT item_id, status, output_id IS NOT NULL AS has_output FROM work ORDER BY item_id`);
      expect(rows).toEqual(dupes.map((d) => ({ item_id: d.id, status: "succeeded_unvalidated", has_output: true })));
    } finally {
      await run.close();
    }
  });

  it("copies of one request spread over many chunks are paid for once, whether their answer is in flight or already written", async () => {
    // 12 distinct texts under 240 ids, chunks of 5: every chunk holds copies of texts
    // whose answers other chunks are awaiting, or have already written and let go.
    const spread = Array.from({ length: 240 }, (_, i) => ({ id: `i${String(i).padStart(3, "0")}`, text: `ticket about case ${i % 12}` }));
    const provider = createInProcessProvider({ latencyMs: 20 });
    const pipeline = definePipeline({ id: "dup-spread", source: { key: "id" }, stages: [classify()] });
    const run = await runPipelineForTest(pipeline, { items: spread, providers: set(provider), options: { chunkSize: 5 } });
    try {
      expect(provider.calls).toBe(12);
      expect(Object.values(await run.statuses("classify")).filter((s) => s === "succeeded_unvalidated")).toHaveLength(240);
    } finally {
      await run.close();
    }
  });

  it("a duplicate item's answer is checked against its own business rule", async () => {
    const pipeline = definePipeline({
      id: "dup-rule",
      source: { key: "id" },
      stages: [classify({ check: (_out: unknown, input: { itemId: string }) => (input.itemId === "c" ? "c needs a person" : undefined) })],
    });
    const provider = createInProcessProvider();
    const run = await runPipelineForTest(pipeline, { items, providers: set(provider) });
    try {
      expect(provider.calls).toBe(2);
      expect(await run.statuses("classify")).toEqual({ a: "succeeded_unvalidated", b: "succeeded_unvalidated", c: "needs_review" });
    } finally {
      await run.close();
    }
  });

  it("a check() that throws dead-letters its item and the run goes on", async () => {
    const pipeline = definePipeline({
      id: "throwing-rule",
      source: { key: "id" },
      stages: [classify({ check: (out: { category: string }) => { if (out.category === "bug") throw new Error("boom"); return undefined; } })],
    });
    const run = await runPipelineForTest(pipeline, { items, providers: set(createInProcessProvider()) });
    try {
      expect(run.summary.items.byStatus).toEqual({ succeeded_unvalidated: 2, failed_terminal: 1 });
      const dead = await run.statuses("classify");
      expect(dead.b).toBe("failed_terminal");
    } finally {
      await run.close();
    }
  });

  for (const [kind, error, final] of [
    ["deterministic", new DeterministicError("openai: file too large"), "failed_terminal"],
    ["transient", new TransientError("openai: 503 on upload", { status: 503 }), "failed_terminal"],
  ] as const) {
    it(`a batch that fails to submit (${kind}) dead-letters its items, not the run`, async () => {
      const inner = createInProcessProvider();
      let submits = 0;
      const batch: BatchApi = {
        maxRequests: 100, maxBytes: 1 << 20,
        submit: async () => { submits++; throw error; },
        poll: async () => ({ status: "ended", counts: { succeeded: 0, errored: 0, processing: 0 } }),
        results: async function* () {},
        cancel: async () => {},
      };
      const provider: Provider = { name: "p", complete: inner.complete, batch };
      const pipeline = definePipeline({ id: `batch-${kind}`, source: { key: "id" }, stages: [classify({ mode: "batch" })] });
      const run = await runPipelineForTest(pipeline, { items, providers: set(provider), options: { maxAttempts: 3, backoffBaseMs: 1, backoffMaxMs: 5 } });
      try {
        expect(run.summary.items.byStatus).toEqual({ [final]: 3 });
        // Transient failures are retried up to the attempt budget; deterministic ones are not.
        expect(submits).toBe(kind === "transient" ? 3 : 1);
        expect(run.summary.stages[0]!.providerCalls).toBe(0);
      } finally {
        await run.close();
      }
    });
  }

  it("writes each batch answer's repair as it completes, so collecting the batch again pays only for repairs not yet written", async () => {
    const t = await memoryDatabase();
    const many = Array.from({ length: 60 }, (_, i) => ({ id: `t${String(i).padStart(2, "0")}`, text: `ticket number ${i}: the invoice was charged twice` }));
    const dir = mkdtempSync(join(tmpdir(), "sluice-repair-"));
    const input = join(dir, "items.jsonl");
    writeFileSync(input, many.map((i) => JSON.stringify(i)).join("\n"));
    const inner = createInProcessProvider();
    const submitted = new Map<string, CompletionRequest[]>();
    // Every batch answer is unparseable, so every item needs one realtime repair.
    const batch: BatchApi = {
      maxRequests: 1000, maxBytes: 1 << 24,
      submit: async (requests) => { const batchId = `b${submitted.size + 1}`; submitted.set(batchId, requests); return { batchId }; },
      poll: async () => ({ status: "ended", counts: { succeeded: 60, errored: 0, processing: 0 } }),
      results: async function* (batchId) {
        for (const r of submitted.get(batchId)!) yield { customId: r.customId, ok: true as const, result: { text: "{not json", finishReason: "stop", usage: { inputTokens: 10, outputTokens: 3 }, model: r.model } };
      },
      cancel: async () => {},
    };
    let repairs = 0;
    let stopAfter = 25;
    const controller = new AbortController();
    const provider: Provider = {
      name: "p",
      batch,
      complete: async (request, options) => {
        if (repairs >= stopAfter) {
          controller.abort(new Error("stopped by the test"));
          throw options?.signal?.reason ?? new Error("stopped");
        }
        repairs++;
        return inner.complete(request);
      },
    };
    const pipeline = definePipeline({ id: "batch-repairs", source: { key: "id" }, stages: [classify({ mode: "batch" })] });
    const base = { db: t.db, pipeline, providers: set(provider), options: { batchPollMs: 1, batchPollMaxMs: 1 } };
    try {
      await expect(runPipeline({ ...base, signal: controller.signal }, input)).rejects.toThrow(/stopped by the test/);
      const written = await t.db.rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM work WHERE status = 'succeeded_unvalidated'`);
      expect(written[0]!.n).toBe(25);
      const before = repairs;
      stopAfter = Infinity;
      const summary = await runPipeline(base, input);
      expect(summary.items.byStatus).toEqual({ succeeded_unvalidated: 60 });
      // The batch was polled again, not resubmitted, and only the 35 unwritten items were repaired.
      expect(submitted.size).toBe(1);
      expect(repairs - before).toBe(35);
      const twice = await t.db.rows(sql`SELECT item_id FROM attempts WHERE mode = 'batch' GROUP BY item_id HAVING count(*) > 1`);
      expect(twice).toEqual([]);
    } finally {
      await t.drop();
    }
  });

  it("an input that cannot be read fails before any run is recorded", async () => {
    const t = await memoryDatabase();
    const pipeline = definePipeline({ id: "bad-input", source: { key: "id" }, stages: [classify()] });
    const dir = mkdtempSync(join(tmpdir(), "sluice-badinput-"));
    writeFileSync(join(dir, "items.txt"), "id\n1\n");
    try {
      const base = { db: t.db, pipeline, providers: set(createInProcessProvider()) };
      await expect(runPipeline(base, join(dir, "items.txt"))).rejects.toThrow(/cannot tell the format/);
      await expect(runPipeline(base, dir)).rejects.toThrow(/not a file/);
      await expect(runPipeline(base, join(dir, "missing.csv"))).rejects.toThrow(/no such file/);
      expect(await t.db.rows(sql`SELECT id FROM runs`)).toEqual([]);
    } finally {
      await t.drop();
    }
  });
});
