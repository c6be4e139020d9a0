import { describe, expect, it } from "vitest";
import { validateOutputs } from "../../stages/index.ts";
import { defineStage, stageVersion, versionParts } from "./define.ts";
import type { JsonSchema } from "./types.ts";
import { changedParts } from "../inspect/versions.ts";

describe("a stage version", () => {
  const fields: JsonSchema = { type: "object", properties: { order_id: { type: "string" } }, required: ["order_id"] };
  type Rules = Parameters<typeof validateOutputs>[0]["rules"];
  const validate = (schema: JsonSchema, rules: Rules = [{ name: "has order", severity: "review", check: () => undefined }]) =>
    validateOutputs({ id: "validate", codeVersion: "1", schemas: { extract: schema }, rules });

  it("covers a validate template's schemas and rules, so changing either reruns the stage", () => {
    const base = stageVersion(validate(fields));
    expect(stageVersion(validate(fields))).toBe(base);
    const stricter = validate({ ...fields, required: ["order_id", "amount"] });
    expect(stageVersion(stricter)).not.toBe(base);
    expect(changedParts(versionParts(validate(fields)), versionParts(stricter)).map((c) => c.part)).toEqual(["settings"]);
    expect(stageVersion(validate(fields, [{ name: "has order", severity: "invalid", check: () => undefined }]))).not.toBe(base);
  });

  it("is what it was for a stage without settings", () => {
    const stage = defineStage({ id: "shout", kind: "map", codeVersion: "1", run: () => ({}) });
    expect(Object.keys(versionParts(stage))).toEqual(["kind", "codeVersion"]);
  });
});
