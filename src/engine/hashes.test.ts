import { describe, expect, it } from "vitest";
import { definePipeline, defineStage } from "../core/define.ts";
import { hashValue } from "../core/hash.ts";
import { compileSchema } from "../core/schema.ts";
import { planStages } from "./plan.ts";
import type { CompletionRequest } from "../providers/types.ts";
import { inputHashOf } from "./inputs.ts";
import { requestHash } from "./llm-call.ts";

/**
 * The engine builds the text of its two most frequent hashes directly. They
 * are stored (input hashes on outputs, request hashes in the request cache),
 * so they must stay exactly what `hashValue` of the same value gives.
 */
const schema = { name: "Label", schema: { type: "object", required: ["category"], properties: { category: { enum: ["a", "b"] }, "10": { type: "number" }, "9": { type: "string" } } } };

describe("hashes built directly", () => {
  const requests: CompletionRequest[] = [
    { customId: "0-a", model: "gpt-4o-mini", messages: [{ role: "user", content: "hi \"there\" \\ é\n😀" }], schema, params: {} },
    { customId: "0-b", model: "gpt-4o-mini", system: "You classify.", messages: [{ role: "user", content: "x" }], schema, params: { temperature: 0, maxTokens: 200, reasoning: { effort: "low" } } as never },
    {
      customId: "0-c",
      model: "claude-haiku",
      system: undefined,
      messages: [
        { role: "user", content: "first" },
        { role: "assistant", content: "{}" },
        { role: "user", content: "Your previous answer was rejected" },
      ],
      schema,
      params: { "2": 1, "10": 2, b: 3, a: 4 } as never,
    },
  ];

  it("request hashes equal hashValue of the request without its custom id", () => {
    for (const request of requests) {
      const { customId: _, ...rest } = request;
      for (const endpoint of ["openai", "openai@simulator", 'odd "endpoint"']) {
        expect(requestHash(endpoint, request)).toBe(hashValue({ provider: endpoint, ...rest }, 32));
        // Twice: the second time the schema's and params' text come from the per-object cache.
        expect(requestHash(endpoint, request)).toBe(hashValue({ provider: endpoint, ...rest }, 32));
      }
    }
    // A request with a member the fast path does not know is hashed the general way, member included.
    const extra = { ...requests[0]!, seed: 7 } as CompletionRequest;
    const { customId: _, ...rest } = extra;
    expect(requestHash("openai", extra)).toBe(hashValue({ provider: "openai", ...rest }, 32));
    expect(requestHash("openai", extra)).not.toBe(requestHash("openai", requests[0]!));
  });

  it("input hashes equal hashValue of { itemId, content, upstream, endpoint }", () => {
    const cases: [string, string, Record<string, string>, string | undefined][] = [
      ["T-1", "abc", {}, undefined],
      ["T-1", "abc", { classify: "f00", filter: "ba7" }, "openai@simulator"],
      ['id "quoted" \\ é', "c0ffee", { "10": "x", "9": "y", b: "z", a: "w" }, "anthropic"],
    ];
    for (const [itemId, content, upstream, endpoint] of cases) {
      expect(inputHashOf(itemId, content, upstream, endpoint)).toBe(hashValue({ itemId, content, upstream, endpoint }, 32));
    }
    // The value stored by earlier versions for this input (see core/hash.test.ts).
    expect(inputHashOf("T-1", "abc", { classify: "f00" }, "openai@simulator")).toBe("06ba42acc67e2ebc17e7df4b6a59e7ca");
  });

  it("follows a definition edited in place between runs of one process", () => {
    const params = { temperature: 0 } as never as CompletionRequest["params"];
    const labels = { name: "Label", schema: { type: "object", properties: { category: { enum: ["a"] } }, required: ["category"] } };
    const request: CompletionRequest = { customId: "0-a", model: "m", messages: [{ role: "user", content: "x" }], schema: labels, params };
    const before = requestHash("e", request);
    expect(compileSchema(labels.schema)({ category: "b" }).ok).toBe(false);
    // A long-lived process changes the stage between two runs; the next run plans its stages again.
    (params as { temperature: number }).temperature = 1;
    (labels.schema.properties.category as { enum: string[] }).enum = ["a", "b"];
    planStages(definePipeline({ id: "edited", source: { key: "id" }, stages: [defineStage({ id: "m", kind: "map", codeVersion: "1", run: () => ({}) })] }));
    const { customId: _, ...rest } = request;
    expect(requestHash("e", request)).toBe(hashValue({ provider: "e", ...rest }, 32));
    expect(requestHash("e", request)).not.toBe(before);
    expect(compileSchema(labels.schema)({ category: "b" }).ok).toBe(true);
  });
});
