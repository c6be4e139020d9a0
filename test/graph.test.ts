import { describe, expect, it } from "vitest";
import { graphMermaid, graphText, pipelineGraph } from "../src/inspect/graph.ts";
import demo from "../pipelines/ticket-triage.ts";
import branches from "./fixtures/pipelines/branches.ts";
import { cliEnv, startCli } from "./e2e/cli.ts";

describe("sluice graph", () => {
  it("draws a linear pipeline as a chain: each stage's direct read is the one before", () => {
    const graph = pipelineGraph(demo);
    expect(graph.stages.map((s) => [s.id, s.direct])).toEqual([["filter", []], ["classify", ["filter"]], ["extract", ["classify"]], ["validate", ["extract"]], ["commit", ["validate"]]]);
    expect(graph.stages.find((s) => s.id === "validate")!.reads).toEqual(["filter", "classify", "extract"]);
    expect(graphText(graph)).toContain("no branches");
  });

  it("finds two branches that read only classify and meet at validate", () => {
    const graph = pipelineGraph(branches);
    expect(graph.stages.map((s) => [s.id, s.depth, s.direct])).toEqual([
      ["classify", 0, []],
      ["billing", 1, ["classify"]],
      ["bugs", 1, ["classify"]],
      ["validate", 2, ["billing", "bugs"]],
      ["commit", 3, ["validate"]],
    ]);
    expect(graphText(graph)).toContain("branches (read nothing of each other): billing | bugs");
    const mermaid = graphMermaid(graph).split("\n");
    expect(mermaid[0]).toBe("flowchart TD");
    expect(mermaid).toEqual(expect.arrayContaining(["  source --> s_classify", "  s_classify --> s_billing", "  s_classify --> s_bugs", "  s_billing --> s_validate", "  s_bugs --> s_validate", "  s_validate --> s_commit"]));
    // Only direct reads are edges: commit reads classify too, through validate.
    expect(mermaid).not.toContain("  s_classify --> s_commit");
  });

  it("prints the graph from the command line, and a one-line error for an unknown pipeline", async () => {
    const ok = await startCli(["graph", "test/fixtures/pipelines/branches.ts", "--mermaid"], cliEnv()).done;
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("s_bugs --> s_validate");
    const bad = await startCli(["graph", "no-such-pipeline"], cliEnv()).done;
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim().split("\n")).toEqual([expect.stringContaining('no pipeline "no-such-pipeline"')]);
  }, 120_000);
});
