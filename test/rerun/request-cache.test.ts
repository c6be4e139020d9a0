import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { definePipeline } from "../../src/core/define.ts";
import type { LlmStage, PipelineDef } from "../../src/core/types.ts";
import { buildRequest, requestHash } from "../../src/engine/llm-call.ts";
import { memoryDatabase, type TestDatabase } from "../../src/testing/databases.ts";
import { runPipelineForTest } from "../../src/testing/harness.ts";
import { pricedInProcess, variant } from "./helpers.ts";

/**
 * The request cache: identical provider requests (model, messages, schema,
 * parameters) are answered from the store across items and runs, counted as
 * reused at zero cost; anything that changes the answer misses.
 */
const labelSchema = {
  type: "object",
  additionalProperties: false,
  required: ["label"],
  properties: { label: { enum: ["billing", "bug", "other"] } },
};

const label: LlmStage = {
  id: "label",
  kind: "classify",
  model: "gpt-4o-mini",
  prompt: { system: "Label the ticket.", user: "{{item.text}}" },
  output: { name: "Label", schema: labelSchema },
  params: { temperature: 0, maxTokens: 20 },
};
const pipeline: PipelineDef = definePipeline({ id: "cache-check", source: { key: "id" }, stages: [label] });

const A = { id: "a", text: "I was charged twice on my invoice" };
const A_COPY = { id: "a-copy", text: A.text };
const C = { id: "c", text: "the app crashes on export" };

describe("request cache", () => {
  let t: TestDatabase;
  const llm = pricedInProcess();
  beforeAll(async () => {
    t = await memoryDatabase();
  });
  afterAll(async () => {
    await t?.drop();
  });

  async function run(p: PipelineDef, items: Record<string, unknown>[], options = {}) {
    const before = llm.calls();
    const r = await runPipelineForTest(p, { items, db: t.db, providers: llm.providers, options });
    const attempts = await t.db.rows<{ item_id: string }>(sql`SELECT item_id FROM attempts WHERE run_id = ${r.summary.runId}`);
    return { summary: r.summary.stages[0]!, calls: llm.calls() - before, attempted: attempts.map((a) => a.item_id).sort(), outputs: await r.outputs("label") };
  }

  it("answers an identical request for another item in a later run from the cache, at zero cost", async () => {
    const first = await run(pipeline, [A]);
    expect(first.calls).toBe(1);
    expect(first.summary.costUsd).toBeGreaterThan(0);

    // `a` is reused by the reuse rule; `a-copy` has another id (another input hash) but sends the same request.
    const second = await run(pipeline, [A, A_COPY, C]);
    expect(second.calls).toBe(1);
    expect(second.attempted).toEqual(["c"]);
    expect(second.summary).toMatchObject({ processed: 3, reused: 2, providerCalls: 1 });
    expect(second.outputs["a-copy"]).toEqual(second.outputs.a);
    const cacheOnly = await run(pipeline, [{ id: "a-third", text: A.text }]);
    expect(cacheOnly).toMatchObject({ calls: 0, attempted: [], summary: { processed: 1, reused: 1, providerCalls: 0, costUsd: 0 } });
  });

  it("answers identical requests of other items in the same run once their first answer is stored", async () => {
    const items = ["x1", "x2", "x3", "x4"].map((id) => ({ id, text: "where can i download my receipt" }));
    // One item per chunk, so later chunks find what earlier ones stored.
    const r = await run(pipeline, items, { chunkSize: 1, concurrency: 1 });
    expect(r.calls).toBeLessThan(items.length);
    expect(r.summary.providerCalls).toBe(r.calls);
    expect(r.summary.reused).toBe(items.length - r.calls);
  });

  it.each([
    ["a parameter", variant(pipeline, "label", { params: { temperature: 0.7, maxTokens: 20 } })],
    ["the system prompt", variant(pipeline, "label", { prompt: { system: "Label this support ticket." } })],
    ["the user prompt", variant(pipeline, "label", { prompt: { user: "Ticket: {{item.text}}" } })],
    ["the model", variant(pipeline, "label", { model: "gpt-4o" })],
    ["the output schema", definePipeline({ ...pipeline, stages: [{ ...label, output: { name: "Label", schema: { ...labelSchema, properties: { label: { enum: ["billing", "bug", "account", "other"] } } } } }] })],
  ])("misses when %s changes", async (_what, changed) => {
    const r = await run(changed, [A]);
    expect(r.calls).toBe(1);
    expect(r.summary).toMatchObject({ processed: 1, reused: 0, providerCalls: 1 });
  });

  it("hits when the stage version changes but the request does not (codeVersion)", async () => {
    const r = await run(variant(pipeline, "label", { codeVersion: "2" }), [A]);
    expect(r).toMatchObject({ calls: 0, attempted: [], summary: { processed: 1, reused: 1, providerCalls: 0, costUsd: 0 } });
  });

  it("keys requests by everything that affects the answer and nothing else", () => {
    const input = { itemId: "a", item: A, outputs: {} };
    const hash = (stage: LlmStage, customId = "0-a", provider = "openai") => requestHash(provider, buildRequest(stage, input, customId));
    const h = hash(label);
    expect(hash(label, "0-other-custom-id")).toBe(h);
    expect(hash(label, "0-a", "anthropic")).not.toBe(h);
    expect(hash({ ...label, params: { temperature: 0, maxTokens: 21 } })).not.toBe(h);
    expect(hash({ ...label, params: { temperature: 0, maxTokens: 20, topP: 0.9 } })).not.toBe(h);
    expect(hash({ ...label, model: "gpt-4o" })).not.toBe(h);
    expect(hash({ ...label, prompt: { ...label.prompt, system: undefined } })).not.toBe(h);
    expect(hash({ ...label, output: { name: "Label2", schema: labelSchema } })).not.toBe(h);
    // Not part of the request: the stage id, its description, its code version.
    expect(hash({ ...label, id: "renamed", description: "x", codeVersion: "9" })).toBe(h);
  });
});
