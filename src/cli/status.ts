import { Command } from "commander";
import { summarizeRun, type RunSummary } from "../inspect/summary.ts";
import type { Database } from "../store/database.ts";
import { recentRuns } from "../store/reports.ts";
import { printJson, withStore } from "./common.ts";
import { formatSummary } from "./format.ts";

export interface RunListing {
  runId: string;
  pipeline: string;
  status: string;
  rowsRead: number;
  createdAt: string;
  finishedAt: string | null;
  costUsd: number;
  /** For a `running` run: whether a live worker has it. Not live: its process was killed or stopped, and `sluice resume` goes on. */
  live?: boolean;
}

export async function listRuns(db: Database, limit = 20): Promise<RunListing[]> {
  const rows = await recentRuns(db, limit);
  return rows.map((r) => ({
    runId: r.id,
    pipeline: r.pipeline,
    status: r.status,
    rowsRead: r.rows_read,
    createdAt: new Date(r.created_at).toISOString(),
    finishedAt: r.finished_at ? new Date(r.finished_at).toISOString() : null,
    costUsd: Math.round(r.cost * 1e6) / 1e6,
    ...(r.status === "running" ? { live: r.live } : {}),
  }));
}

/** A run's status as the list shows it: a `running` run no live worker has was stopped (killed, or Ctrl-C). */
function shownStatus(r: RunListing): string {
  return r.status === "running" && r.live === false ? "stopped (resume it)" : r.status;
}

/** `sluice status`: recent runs, or one run's summary. */
export async function statusCli(runId: string | undefined, options: { json?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<RunSummary | RunListing[]> {
  return withStore(options.env, async (db) => {
    if (!runId) {
      const runs = await listRuns(db);
      if (options.json) printJson(runs);
      else if (runs.length === 0) process.stdout.write("no runs yet (sluice run <pipeline> --input <file>)\n");
      else {
        const rows = [["run", "pipeline", "status", "rows read", "cost", "started"], ...runs.map((r) => [r.runId, r.pipeline, shownStatus(r), r.rowsRead.toLocaleString("en-US"), `$${r.costUsd.toFixed(4)}`, r.createdAt])];
        const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
        for (const row of rows) process.stdout.write(`${row.map((cell, i) => (i === 3 || i === 4 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join("  ").trimEnd()}\n`);
      }
      return runs;
    }
    // summarizeRun says when there is no such run (requireRun).
    const summary = await summarizeRun(db, runId);
    if (options.json) printJson(summary);
    else process.stdout.write(`${formatSummary(summary)}\n`);
    return summary;
  });
}

export function statusCommand(): Command {
  return new Command("status")
    .argument("[runId]")
    .option("--json", "print JSON")
    .action(async (runId: string | undefined, opts: { json?: boolean }) => {
      await statusCli(runId, opts);
    });
}
