import { describe, expect, it } from "vitest";
import * as sluice from "../src/index.ts";
import * as testing from "../src/testing/index.ts";
import * as core from "sluice/core";
import * as stages from "sluice/stages";

describe("the public API", () => {
  it("exports what a user needs to define, run and test a pipeline, and nothing by accident", () => {
    expect(Object.keys(sluice).sort()).toEqual(
      [
        "BudgetExhaustedError", "DefinitionError", "DeterministicError", "FINAL_STATES", "ITEM_STATUSES", "PRICES", "QualityError", "SluiceError", "StageHaltedError", "TransientError",
        "compareStage", "compileSchema", "costOf", "createProvider", "createProviders", "defineConfig", "definePipeline", "defineStage", "diffRuns", "openDatabase",
        "prepareRerun", "readSource", "resumeRun", "runIncrement", "runPipeline", "stageVersion", "stageVersions", "startSimulator", "summarizeRun", "triggerPipeline", "versionParts", "watchPipelines",
      ].sort(),
    );
    expect(Object.keys(testing).sort()).toEqual(["createInProcessProvider", "freshPostgres", "memoryDatabase", "runPipelineForTest", "singleProvider", "testDrivers"]);
    expect(Object.keys(stages).sort()).toEqual(["llmClassify", "llmExtract", "ruleFilter", "stagesFor", "upsertCommit", "validateOutputs"]);
    // What a pipeline file needs, also in the whole API, as the very same values.
    expect(Object.keys(core).sort()).toEqual([
      "BudgetExhaustedError", "DefinitionError", "DeterministicError", "FINAL_STATES", "ITEM_STATUSES", "QualityError", "SluiceError", "StageHaltedError", "TransientError",
      "compileSchema", "defineConfig", "definePipeline", "defineStage", "stageVersion", "versionParts",
    ].sort());
    for (const [name, value] of Object.entries(core)) expect(sluice[name as keyof typeof sluice]).toBe(value);
  });

  it("runs a pipeline defined with it, in a few lines", async () => {
    const pipeline = sluice.definePipeline({
      id: "hello",
      source: { key: "id" },
      stages: [sluice.defineStage({ id: "shout", kind: "map", codeVersion: "1", run: ({ item }) => ({ text: String(item.text).toUpperCase() }) })],
    });
    const run = await testing.runPipelineForTest(pipeline, { items: [{ id: "1", text: "hi" }] });
    expect(await run.outputs("shout")).toEqual({ "1": { text: "HI" } });
    expect(run.summary.items).toEqual({ total: 1, byStatus: { succeeded_unvalidated: 1 } });
    await run.close();
  });
});
