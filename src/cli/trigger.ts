import { Command } from "commander";
import type { IncrementResult } from "../sensors/index.ts";
import { triggerPipeline } from "../sensors/index.ts";
import { FILE_SETTLE_MS } from "../sensors/files.ts";
import { loadPipeline, withStore } from "./common.ts";
import { formatSummary } from "./format.ts";
import { budgetExit } from "./run.ts";
import { incrementsDirFor, runSession } from "./session.ts";

/**
 * `sluice trigger <pipeline>`: start a pipeline now, as a sensor would, from a
 * script, a cron job or another system. A table, query or glob source runs
 * over what is new since its last finished run; nothing new, no run.
 */
export async function triggerCli(options: { pipeline: string; input?: string; json?: boolean; env?: NodeJS.ProcessEnv }): Promise<IncrementResult> {
  const env = options.env ?? process.env;
  const pipeline = await loadPipeline(options.pipeline);
  return withStore(env, (db) =>
    runSession({ db, pipeline, env, json: options.json, interrupted: "interrupted; run `sluice trigger` again (or `sluice resume <run>`) to continue" }, (base) => triggerPipeline({ ...base, input: options.input, snapshotDir: incrementsDirFor(env) }), (result) => ({ json: result, text: formatIncrement(result) })),
  );
}

/** What an increment did, for a person: where the cursor went, then each run's summary. */
export function formatIncrement(result: IncrementResult): string {
  const lines: string[] = [];
  if (result.cursor) {
    lines.push(result.read === 0 ? `${result.pipeline}: no rows past cursor ${result.cursor.from ?? "(none yet)"}: nothing to run` : `${result.pipeline}: read ${result.read} new or changed row(s); cursor ${result.cursor.from ?? "(start)"} -> ${result.cursor.to}`);
    if (result.pruned) lines.push(`  deleted ${result.pruned} snapshot(s) of finished runs (their items are in the store)`);
  } else if (result.source === "glob") {
    lines.push(result.read === 0 ? `${result.pipeline}: no new files: nothing to run` : `${result.pipeline}: ${result.read} new file(s)`);
    for (const f of result.files ?? []) lines.push(`  ${f.file}: run ${f.runId}, ${result.runs.find((r) => r.runId === f.runId)?.status ?? "started"}`);
    for (const s of result.skipped ?? []) lines.push(`  skipped ${s.file}: ${s.reason}`);
    for (const u of result.unsettled ?? []) lines.push(`  not yet ${u.path}: it changed ${(u.changedMsAgo / 1000).toFixed(1)} s ago and may still be being written; read once it has been still for ${FILE_SETTLE_MS / 1000} s`);
  }
  for (const run of result.runs) lines.push("", formatSummary(run));
  return lines.join("\n");
}

export function triggerCommand(): Command {
  return new Command("trigger")
    .argument("<pipeline>", "pipeline id (pipelines/<id>.ts) or path to a pipeline file")
    .option("-i, --input <file>", "input file, for a pipeline whose source is a file")
    .option("--json", "print what was read and each run's summary as one JSON object on the last stdout line")
    .action(async (pipeline: string, opts: { input?: string; json?: boolean }) => {
      const result = await triggerCli({ pipeline, ...opts });
      for (const run of result.runs) budgetExit(run);
    });
}
