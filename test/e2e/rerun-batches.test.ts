import { describe, expect, it } from "vitest";
import { writeDemoVariant } from "../rerun/helpers.ts";
import { cliEnv, lastJson, runCli, tempDataDir } from "./cli.ts";
import { demoSlice } from "./data.ts";

/**
 * Zero config: every command starts its own simulator. Batch ids it hands out
 * must never repeat across those restarts, or a later run's batch would meet
 * an earlier run's in the store.
 */
describe("reruns with the built-in simulator and a batch stage", () => {
  it("succeed one after another, each with its own provider batches", async () => {
    const env = cliEnv({ SLUICE_DATA_DIR: tempDataDir(), SLUICE_BATCH_POLL_MS: "100" });
    const input = demoSlice(80);
    const prompts = ["Extract the fields of a support ticket.", "Extract the fields of a support ticket carefully.", "Extract every field a support ticket states."];
    const runs: { runId: string; stages: { id: string; providerCalls: number; batchCalls: number }[] }[] = [];
    for (const [i, system] of prompts.entries()) {
      const file = writeDemoVariant("extract", { prompt: { system }, mode: "batch" });
      const args = i === 0 ? ["run", file, "--input", input, "--json"] : ["rerun", file, "--stage", "extract", "--json"];
      const out = await runCli(args, env);
      expect(out.code, out.stderr).toBe(0);
      runs.push(lastJson(out.stdout));
    }
    // Every run paid for extract again (a new prompt each time), through a batch of its own.
    const extract = runs.map((r) => r.stages.find((s) => s.id === "extract")!);
    expect(extract.every((s) => s.batchCalls > 0)).toBe(true);
    expect(new Set(runs.map((r) => r.runId)).size).toBe(3);
  }, 240_000);
});
