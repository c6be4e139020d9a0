import { Command } from "commander";
import { sql } from "drizzle-orm";
import type { Database } from "../store/database.ts";
import { CliError, openStore, printJson } from "./common.ts";
import { resumeCli } from "./resume.ts";

export interface DeadLetter {
  stage: string;
  itemId: string;
  errorClass: string | null;
  message: string | null;
  attempts: number;
}

export async function listDeadLetters(db: Database, runId: string): Promise<DeadLetter[]> {
  const rows = await db.rows<{ stage_id: string; item_id: string; error_class: string | null; error_message: string | null; attempts: number }>(sql`
    SELECT stage_id, item_id, error_class, error_message, attempts FROM work
    WHERE run_id = ${runId} AND status = 'failed_terminal' ORDER BY stage_index, item_id`);
  return rows.map((r) => ({ stage: r.stage_id, itemId: r.item_id, errorClass: r.error_class, message: r.error_message, attempts: r.attempts }));
}

/**
 * Put a run's dead letters back in the queue (attempt budget reset) and mark
 * the run running again, so `resume` retries exactly those items.
 */
export async function requeueDeadLetters(db: Database, runId: string): Promise<number> {
  return db.transaction(async (tx) => {
    const rows = await tx.rows(sql`
      UPDATE work SET status = 'queued', attempts = 0, error_class = NULL, error_message = NULL, claimed_by = NULL, updated_at = now()
      WHERE run_id = ${runId} AND status = 'failed_terminal' RETURNING item_id`);
    if (rows.length) await tx.rows(sql`UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ${runId}`);
    return rows.length;
  });
}

async function existingRun(db: Database, runId: string) {
  const run = await db.rows(sql`SELECT 1 FROM runs WHERE id = ${runId}`);
  if (run.length === 0) throw new CliError(`no run ${runId} (sluice status lists runs)`);
}

/** `sluice dlq <runId>` lists dead letters; `sluice dlq retry <runId>` requeues them and resumes the run. */
export async function dlqCli(action: "list" | "retry", runId: string, options: { json?: boolean; env?: NodeJS.ProcessEnv } = {}) {
  const db = await openStore(options.env);
  let requeued = 0;
  try {
    await existingRun(db, runId);
    if (action === "list") {
      const letters = await listDeadLetters(db, runId);
      if (options.json) printJson(letters);
      else if (letters.length === 0) process.stdout.write(`run ${runId}: no dead letters\n`);
      else {
        process.stdout.write(`run ${runId}: ${letters.length} dead letter(s)\n`);
        for (const d of letters) process.stdout.write(`${d.stage.padEnd(10)} ${d.itemId.padEnd(14)} ${(d.errorClass ?? "?").padEnd(13)} ${d.message ?? ""}\n`);
      }
      return letters;
    }
    requeued = await requeueDeadLetters(db, runId);
  } finally {
    await db.close();
  }
  process.stderr.write(`requeued ${requeued} dead letter(s) of run ${runId}\n`);
  if (requeued === 0) return [];
  return resumeCli(runId, { json: options.json, env: options.env });
}

export function dlqCommand(): Command {
  return new Command("dlq")
    .description("list a run's dead-lettered items with error class and message; `dlq retry <runId>` requeues them")
    .argument("<runIdOrRetry>", "a run id, or `retry`")
    .argument("[runId]", "the run id, after `retry`")
    .option("--json", "print JSON")
    .action(async (first: string, second: string | undefined, opts: { json?: boolean }) => {
      if (first === "retry") {
        if (!second) throw new CliError("usage: sluice dlq retry <runId>");
        await dlqCli("retry", second, opts);
      } else {
        await dlqCli("list", first, opts);
      }
    });
}
