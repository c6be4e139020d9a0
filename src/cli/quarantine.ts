import { Command } from "commander";
import { rejectedRows } from "../store/reports.ts";
import { requireRun } from "../store/runs.ts";
import { printJson, withStore } from "./common.ts";

export interface RejectedRow {
  line: number;
  itemId: string | null;
  state: "quarantined" | "deduplicated";
  reason: string;
  raw: string | null;
}

/** `sluice quarantine <runId>`: every source row that did not become an item, with its line and reason. */
export async function quarantineCli(runId: string, options: { json?: boolean; all?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<RejectedRow[]> {
  return withStore(options.env, async (db) => {
    await requireRun(db, runId);
    const rows = await rejectedRows(db, runId, { all: options.all });
    const result = rows.map((r) => ({ line: r.line, itemId: r.item_id, state: r.state, reason: r.reason, raw: r.raw }));
    if (options.json) printJson(result);
    else if (result.length === 0) process.stdout.write(`run ${runId}: nothing quarantined\n`);
    else {
      process.stdout.write(`run ${runId}: ${result.length} row(s)\n`);
      for (const r of result) {
        process.stdout.write(`line ${String(r.line).padStart(6)}  ${(r.itemId ?? "(no id)").padEnd(14)} ${r.state === "deduplicated" ? "[dedup] " : ""}${r.reason}\n`);
      }
    }
    return result;
  });
}

export function quarantineCommand(): Command {
  return new Command("quarantine")
    .argument("<runId>")
    .option("--all", "include rows deduplicated as identical copies")
    .option("--json", "print JSON")
    .action(async (runId: string, opts: { json?: boolean; all?: boolean }) => {
      await quarantineCli(runId, opts);
    });
}
