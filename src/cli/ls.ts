import { publicTargetUrl } from "../core/target.ts";
import { Command } from "commander";
import { sensorsOf, stageVersion } from "../core/define.ts";
import { isLlmStage, type PipelineDef } from "../core/types.ts";
import { printJson } from "./common.ts";
import { loadAllPipelines } from "./schedule.ts";

/**
 * `sluice ls`: the pipelines in `pipelines/`, each with its source key, what
 * starts it, and its stages in order: kind, version, and for a model stage
 * its provider, model and mode; for a commit, its target. No store is opened.
 */
export interface PipelineListing {
  id: string;
  description: string | null;
  key: string;
  startedBy: string;
  stages: { id: string; kind: string; version: string; model?: string; provider?: string; mode?: string; gated: boolean; target?: string }[];
}

export function describePipeline(p: PipelineDef): PipelineListing {
  const sensors = sensorsOf(p);
  const startedBy = sensors.length ? `sluice watch: ${sensors.join(", ")}` : "on demand";
  return {
    id: p.id,
    description: p.description ?? null,
    key: p.source.key,
    startedBy,
    stages: p.stages.map((s) => ({
      id: s.id,
      kind: s.kind,
      version: stageVersion(s),
      ...(isLlmStage(s) ? { model: s.model, provider: s.provider ?? "default", mode: s.mode ?? "realtime" } : {}),
      gated: typeof s.when === "function",
      ...(s.kind === "commit" ? { target: `${s.target.table}${s.target.columns ? " (typed)" : ""}${s.target.url ? ` in ${publicTargetUrl(s.target.url)}` : ""}` } : {}),
    })),
  };
}

export function lsCommand(): Command {
  return new Command("ls")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const listing = (await loadAllPipelines(process.cwd())).map(describePipeline);
      if (opts.json) return printJson(listing);
      const lines: string[] = [];
      for (const p of listing) {
        lines.push(`${p.id}${p.description ? `: ${p.description}` : ""}`, `  key ${p.key} · ${p.startedBy}`);
        const w = Math.max(...p.stages.map((s) => s.id.length));
        for (const s of p.stages) {
          const what = s.model ? `${s.provider}/${s.model} ${s.mode}` : s.target ? `-> ${s.target}` : "";
          lines.push(`  ${s.id.padEnd(w)}  ${s.kind.padEnd(8)}  ${s.version}  ${what}${s.gated ? "  (gated)" : ""}`);
        }
      }
      process.stdout.write(`${lines.join("\n")}\n`);
    });
}
