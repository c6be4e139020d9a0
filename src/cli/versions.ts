import { Command } from "commander";
import { stableStringify } from "../core/hash.ts";
import { stageVersions, versionOutputs, type StageVersionInfo, type VersionOutput } from "../inspect/versions.ts";
import { CliError, loadPipeline, parsePositiveInt, printJson, withStore } from "./common.ts";

export interface VersionsCliOptions {
  pipeline: string;
  stage?: string;
  /** Print the outputs of this version (a prefix is enough) instead of the history. */
  show?: string;
  limit?: number;
  json?: boolean;
  env?: NodeJS.ProcessEnv;
}

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** One short line per changed part: `model gpt-4o-mini → gpt-4o`, `prompt.system "…" → "…"`. */
function describeChange(c: StageVersionInfo["changes"][number]): string {
  const show = (v: unknown) => clip(typeof v === "string" ? JSON.stringify(v) : stableStringify(v), 60);
  if (c.part === "prompt.system" || c.part === "prompt.user") {
    const key = c.part.slice("prompt.".length);
    return `${c.part} ${show((c.from as Record<string, unknown> | null)?.[key] ?? null)} → ${show((c.to as Record<string, unknown> | null)?.[key] ?? null)}`;
  }
  return `${c.part} ${show(c.from)} → ${show(c.to)}`;
}

/** The human listing: one block per stage, one line per version, oldest first. */
export function formatVersions(versions: StageVersionInfo[]): string {
  if (versions.length === 0) return "no stage versions recorded yet";
  const lines: string[] = [];
  let stage = "";
  for (const v of versions) {
    if (v.stage !== stage) {
      if (stage) lines.push("");
      stage = v.stage;
      lines.push(`${stage} (${String(v.parts.kind ?? "")})`);
    }
    const when = v.firstRunAt ? `first ran ${v.firstRunAt.replace("T", " ").slice(0, 19)} (${v.firstRunId}), ${v.runs} run${v.runs === 1 ? "" : "s"}` : "not run yet";
    const made = `${v.items.toLocaleString("en-US")} item${v.items === 1 ? "" : "s"}, $${v.costUsd.toFixed(4)}`;
    lines.push(`  ${v.current ? "*" : " "} ${v.version}  ${when} · ${made}`);
    if (!v.previous) lines.push("      first version");
    for (const c of v.changes) lines.push(`      ${describeChange(c)}`);
    if (v.previous && v.changes.length === 0) lines.push("      (same parts as the previous version)");
  }
  lines.push("", "* = the version the pipeline defines now");
  return lines.join("\n");
}

/**
 * `sluice versions <pipeline> [--stage id] [--show version]`: the version history
 * of each stage, or the stored outputs of one version.
 */
export async function versionsCli(options: VersionsCliOptions): Promise<StageVersionInfo[] | VersionOutput[]> {
  const pipeline = await loadPipeline(options.pipeline);
  if (options.stage && !pipeline.stages.some((s) => s.id === options.stage)) {
    throw new CliError(`pipeline ${pipeline.id} has no stage "${options.stage}" (stages: ${pipeline.stages.map((s) => s.id).join(", ")})`);
  }
  return withStore(options.env, async (db): Promise<StageVersionInfo[] | VersionOutput[]> => {
    if (options.show) {
      if (!options.stage) throw new CliError("--show needs --stage: versions are per stage");
      const rows = await versionOutputs(db, pipeline.id, options.stage, options.show, { limit: options.limit ?? 20 });
      if (rows.length === 0) throw new CliError(`no outputs of ${options.stage} version ${options.show} in the store (sluice versions ${options.pipeline} --stage ${options.stage} lists them)`);
      if (options.json) printJson(rows);
      else for (const r of rows) process.stdout.write(`${r.itemId}  ${r.status.padEnd(21)} ${stableStringify(r.output)}\n`);
      return rows;
    }
    const versions = await stageVersions(db, pipeline.id, { stage: options.stage, pipeline });
    if (options.json) printJson(versions);
    else process.stdout.write(`${formatVersions(versions)}\n`);
    return versions;
  });
}

export function versionsCommand(): Command {
  return new Command("versions")
    .argument("<pipeline>", "pipeline id (pipelines/<id>.ts) or path to a pipeline file")
    .option("-s, --stage <id>", "only this stage")
    .option("--show <version>", "print the stored outputs of one version of --stage (old versions stay queryable)")
    .option("--limit <n>", "with --show: how many outputs", "20")
    .option("--json", "print JSON")
    .action(async (pipeline: string, opts: { stage?: string; show?: string; limit: string; json?: boolean }) => {
      await versionsCli({ pipeline, stage: opts.stage, show: opts.show, limit: parsePositiveInt(opts.limit, "--limit"), json: opts.json });
    });
}
