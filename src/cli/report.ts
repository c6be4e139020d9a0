import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { Command } from "commander";
import { buildRunReport } from "../inspect/report.ts";
import { reportDocument } from "../report/page.ts";
import { withStore } from "./common.ts";

/**
 * `sluice report <runId> [--out file]`: the run's report as one HTML file
 * that opens anywhere, offline (inline CSS and SVG charts, no script).
 * Returns the path written.
 */
export async function reportCli(runId: string, options: { out?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const out = resolve(options.out ?? `report-${runId}.html`);
  const report = await withStore(options.env, (db) => buildRunReport(db, runId));
  await writeFile(out, reportDocument(report));
  process.stderr.write(`wrote ${out}\n`);
  return out;
}

export function reportCommand(): Command {
  return new Command("report")
    .argument("<runId>")
    .option("-o, --out <file>", "where to write it (default: report-<runId>.html)")
    .action(async (runId: string, opts: { out?: string }) => {
      await reportCli(runId, opts);
    });
}
