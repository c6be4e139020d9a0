import { Command } from "commander";
import { graphMermaid, graphText, pipelineGraph, type PipelineGraph } from "../inspect/graph.ts";
import { loadPipeline, printJson } from "./common.ts";

export interface GraphCliOptions {
  pipeline: string;
  mermaid?: boolean;
  json?: boolean;
}

/** `sluice graph <pipeline> [--mermaid|--json]`: the stages and what each reads. No store is opened. */
export async function graphCli(options: GraphCliOptions): Promise<PipelineGraph> {
  const graph = pipelineGraph(await loadPipeline(options.pipeline));
  if (options.json) printJson(graph);
  else process.stdout.write(`${options.mermaid ? graphMermaid(graph) : graphText(graph)}\n`);
  return graph;
}

export function graphCommand(): Command {
  return new Command("graph")
    .argument("<pipeline>", "pipeline id (pipelines/<id>.ts) or path to a pipeline file")
    .option("--mermaid", "print a Mermaid flowchart")
    .option("--json", "print JSON")
    .action(async (pipeline: string, opts: { mermaid?: boolean; json?: boolean }) => {
      await graphCli({ pipeline, mermaid: opts.mermaid, json: opts.json });
    });
}
