import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { definePipeline } from "../src/core/define.ts";
import type { ProviderSet } from "../src/engine/context.ts";
import { startSimulator, type Simulator } from "../src/sim/index.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import { runPipelineForTest } from "../src/testing/harness.ts";
import { stagesFor } from "../stages/index.ts";
import { schemaOf } from "./types/schema-of.ts";
import { simulatedProviders } from "./fixtures/simulated.ts";

/**
 * A stage's input hash covers the item and the outputs of the stages it
 * reads, no others: two stages that read only `classify` are independent, so
 * a prompt change on one makes no call on the other when the pipeline runs
 * again (counted by the simulator, per model, over the official SDKs).
 */
type Note = { text: string };
type Label = { category: "billing" | "bug" | "other"; confidence: number };
const LABEL = schemaOf<Label>({ type: "object", additionalProperties: false, required: ["category", "confidence"], properties: { category: { enum: ["billing", "bug", "other"] }, confidence: { type: "number" } } });
const SUMMARY = schemaOf<{ summary: string }>({ type: "object", additionalProperties: false, required: ["summary"], properties: { summary: { type: "string" } } });
const TAGS = schemaOf<{ tags: string[] }>({ type: "object", additionalProperties: false, required: ["tags"], properties: { tags: { type: "array", items: { type: "string" } } } });

function branches(summaryPrompt: string) {
  const { llmClassify, llmExtract, upsertCommit } = stagesFor<Note>();
  const classify = llmClassify({ id: "classify", provider: "openai", model: "gpt-4o-mini", prompt: { user: "{{item.text}}" }, output: { name: "Label", schema: LABEL } });
  const summary = llmExtract({ id: "summary", provider: "openai", model: "gpt-4o", reads: [classify], prompt: { user: summaryPrompt }, output: { name: "Summary", schema: SUMMARY } });
  const tags = llmExtract({ id: "tags", provider: "anthropic", model: "claude-haiku-4-5", reads: [classify], prompt: { user: "Tags for a {{outputs.classify.category}} note: {{item.text}}" }, output: { name: "Tags", schema: TAGS } });
  const commit = upsertCommit({
    id: "commit",
    table: "branch_notes",
    key: "id",
    reads: [classify, summary, tags],
    row: ({ itemId, outputs }) => ({ id: itemId, category: outputs.classify.category, summary: outputs.summary?.summary ?? null, tags: outputs.tags?.tags ?? null }),
  });
  return definePipeline({ id: "branch-notes", source: { key: "id" }, stages: [classify, summary, tags, commit] });
}

const items = Array.from({ length: 8 }, (_, i) => ({ id: `n${i}`, text: ["charged twice on my invoice", "the app crashes on export", "hello there", "refund please"][i % 4]! + ` #${i}` }));

let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
});
afterAll(async () => {
  await sim?.close();
});

const providerSet = (): ProviderSet => simulatedProviders(sim);

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`two stages reading only classify, on ${driver.name}`, () => {
    let t: TestDatabase;
    afterEach(async () => {
      await t?.drop();
    });

    it("a prompt change on one makes every call again on it and none on the other", async () => {
      t = await driver.open();
      sim.reset();
      const first = await runPipelineForTest(branches("Summarize: {{item.text}}"), { items, db: t.db, providers: providerSet() });
      expect(first.summary.items.byStatus.committed).toBe(items.length);
      expect(sim.stats().callsByModel).toEqual({ "gpt-4o-mini": items.length, "gpt-4o": items.length, "claude-haiku-4-5": items.length });

      sim.reset();
      const second = await runPipelineForTest(branches("Summarize in one line: {{item.text}}"), { items, db: t.db, providers: providerSet() });
      expect(second.summary.items.byStatus.committed).toBe(items.length);
      // Only the changed stage calls its model; classify and tags are reused from the first run.
      expect(sim.stats().callsByModel).toEqual({ "gpt-4o": items.length });
      const byStage = Object.fromEntries(second.summary.stages.map((s) => [s.id, [s.providerCalls, s.reused]]));
      expect(byStage).toEqual({ classify: [0, items.length], summary: [items.length, 0], tags: [0, items.length], commit: [0, expect.any(Number)] });
      // The tags committed are the first run's, item for item.
      const tagsOf = async (run: typeof first) => Object.fromEntries(Object.entries(await run.outputs("tags")).map(([id, o]) => [id, o]));
      expect(await tagsOf(second)).toEqual(await tagsOf(first));
    }, 180_000);
  });
}
