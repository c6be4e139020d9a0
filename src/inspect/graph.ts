import { readsOf } from "../core/define.ts";
import { isLlmStage, type PipelineDef } from "../core/types.ts";

/**
 * A pipeline's stages as a graph: each stage and the stages it reads (its
 * `reads`, or every stage before it). Drawn from the definition alone; no
 * store is opened.
 */
export interface StageNode {
  id: string;
  kind: string;
  /** `provider/model` for a model stage, `-> table` for a commit. */
  what: string;
  gated: boolean;
  /** Every stage it reads, in stage order. */
  reads: string[];
  /** The reads that are not also read through another one it reads: the edges drawn. */
  direct: string[];
  /** Longest chain of reads below it: stages of one depth read nothing of each other. */
  depth: number;
}

export interface PipelineGraph {
  pipeline: string;
  sourceKey: string;
  stages: StageNode[];
}

export function pipelineGraph(pipeline: PipelineDef): PipelineGraph {
  const reads = pipeline.stages.map((_, i) => readsOf(pipeline, i));
  const index = new Map(pipeline.stages.map((s, i) => [s.id, i]));
  // Everything a stage depends on, through any chain of reads.
  const below: Set<string>[] = [];
  reads.forEach((r, i) => {
    const all = new Set<string>();
    for (const id of r) {
      all.add(id);
      for (const d of below[index.get(id)!] ?? []) all.add(d);
    }
    below[i] = all;
  });
  const depth: number[] = [];
  const stages = pipeline.stages.map((s, i): StageNode => {
    const r = reads[i]!;
    depth[i] = r.length === 0 ? 0 : 1 + Math.max(...r.map((id) => depth[index.get(id)!]!));
    return {
      id: s.id,
      kind: s.kind,
      what: isLlmStage(s) ? `${s.provider ?? "default"}/${s.model}` : s.kind === "commit" ? `-> ${s.target.table}` : "",
      gated: typeof s.when === "function",
      reads: r,
      direct: r.filter((id) => !r.some((other) => other !== id && below[index.get(other)!]!.has(id))),
      depth: depth[i]!,
    };
  });
  return { pipeline: pipeline.id, sourceKey: pipeline.source.key, stages };
}

/** One line per stage, in order, with what it reads; then the stages that read nothing of each other. */
export function graphText(graph: PipelineGraph): string {
  const w = Math.max(...graph.stages.map((s) => s.id.length));
  const k = Math.max(...graph.stages.map((s) => s.kind.length));
  const lines = [`${graph.pipeline} (items keyed by ${graph.sourceKey})`];
  for (const s of graph.stages) {
    const through = s.reads.filter((r) => !s.direct.includes(r));
    const reads = s.reads.length === 0 ? "reads the item only" : `reads ${s.direct.join(", ")}${through.length ? ` (and ${through.join(", ")} through ${s.direct.length === 1 ? "it" : "them"})` : ""}`;
    lines.push(`  ${s.id.padEnd(w)}  ${s.kind.padEnd(k)}  ${reads}${s.gated ? " · gated" : ""}${s.what ? ` · ${s.what}` : ""}`);
  }
  const levels = new Map<number, string[]>();
  for (const s of graph.stages) levels.set(s.depth, [...(levels.get(s.depth) ?? []), s.id]);
  const side = [...levels.values()].filter((ids) => ids.length > 1);
  lines.push(side.length === 0 ? "  each stage reads the one before it: no branches" : `  branches (read nothing of each other): ${side.map((ids) => ids.join(" | ")).join("; ")}`);
  return lines.join("\n");
}

/** A Mermaid flowchart: the source, each stage (kind, model or target), an edge per direct read. */
export function graphMermaid(graph: PipelineGraph): string {
  const node = (id: string) => `s_${id.replace(/[^a-zA-Z0-9_]/g, "_")}`;
  const lines = ["flowchart TD", `  source[("items (${graph.sourceKey})")]`];
  for (const s of graph.stages) {
    const label = [`${s.id}`, `${s.kind}${s.gated ? ", gated" : ""}`, s.what].filter(Boolean).join("<br/>");
    lines.push(`  ${node(s.id)}["${label.replace(/"/g, "#quot;")}"]`);
  }
  for (const s of graph.stages) {
    if (s.reads.length === 0) lines.push(`  source --> ${node(s.id)}`);
    for (const r of s.direct) lines.push(`  ${node(r)} --> ${node(s.id)}`);
  }
  return lines.join("\n");
}
