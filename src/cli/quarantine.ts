import { Command } from "commander";
import { sql } from "drizzle-orm";
import { CliError, openStore, printJson } from "./common.ts";

export interface RejectedRow {
  line: number;
  itemId: string | null;
  state: "quarantined" | "deduplicated";
  reason: string;
  raw: string | null;
}

/** `sluice quarantine <runId>`: every source row that did not become an item, with its line and reason. */
export async function quarantineCli(runId: string, options: { json?: boolean; all?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<RejectedRow[]> {
  const db = await openStore(options.env);
  try {
    const run = await db.rows(sql`SELECT 1 FROM runs WHERE id = ${runId}`);
    if (run.length === 0) throw new CliError(`no run ${runId} (sluice status lists runs)`);
    const rows = await db.rows<{ line: number; item_id: string | null; state: RejectedRow["state"]; reason: string; raw: string | null }>(sql`
      SELECT line, item_id, state, reason, raw FROM rejected_rows
      WHERE run_id = ${runId} ${options.all ? sql`` : sql`AND state = 'quarantined'`}
      ORDER BY line`);
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
  } finally {
    await db.close();
  }
}

export function quarantineCommand(): Command {
  return new Command("quarantine")
    .description("list the input rows a run quarantined, with line numbers and reasons")
    .argument("<runId>")
    .option("--all", "include rows deduplicated as identical copies")
    .option("--json", "print JSON")
    .action(async (runId: string, opts: { json?: boolean; all?: boolean }) => {
      await quarantineCli(runId, opts);
    });
}
