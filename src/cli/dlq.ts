import { Command } from "commander";
import type { Database } from "../store/database.ts";
import { deadLetters } from "../store/reports.ts";
import { requireRun } from "../store/runs.ts";
import { requeueDeadLetters } from "../store/work.ts";
import { CliError, printJson, withStore } from "./common.ts";
import { resumeCli } from "./resume.ts";

export interface DeadLetter {
  stage: string;
  itemId: string;
  errorClass: string | null;
  message: string | null;
  attempts: number;
}

export async function listDeadLetters(db: Database, runId: string): Promise<DeadLetter[]> {
  const rows = await deadLetters(db, runId);
  return rows.map((r) => ({ stage: r.stage_id, itemId: r.item_id, errorClass: r.error_class, message: r.error_message, attempts: r.attempts }));
}

/** `sluice dlq <runId>` lists dead letters; `sluice dlq retry <runId>` requeues them and resumes the run. */
export async function dlqCli(action: "list" | "retry", runId: string, options: { json?: boolean; env?: NodeJS.ProcessEnv } = {}) {
  if (action === "list") {
    return withStore(options.env, async (db) => {
      await requireRun(db, runId);
      const letters = await listDeadLetters(db, runId);
      if (options.json) printJson(letters);
      else if (letters.length === 0) process.stdout.write(`run ${runId}: no dead letters\n`);
      else {
        process.stdout.write(`run ${runId}: ${letters.length} dead letter(s)\n`);
        for (const d of letters) process.stdout.write(`${d.stage.padEnd(10)} ${d.itemId.padEnd(14)} ${(d.errorClass ?? "?").padEnd(13)} ${d.message ?? ""}\n`);
      }
      return letters;
    });
  }
  // The store is closed before resuming: resume opens its own.
  const requeued = await withStore(options.env, async (db) => {
    await requireRun(db, runId);
    return requeueDeadLetters(db, runId);
  });
  process.stderr.write(`requeued ${requeued} dead letter(s) of run ${runId}\n`);
  if (requeued === 0) return [];
  return resumeCli(runId, { json: options.json, env: options.env });
}

export function dlqCommand(): Command {
  return new Command("dlq")
    .argument("<runIdOrRetry>", "a run id, or `retry`")
    .argument("[runId]", "the run id, after `retry`")
    .option("--json", "print JSON")
    .action(async (first: string, second: string | undefined, opts: { json?: boolean }) => {
      if (first === "retry") {
        if (!second) throw new CliError("usage: sluice dlq retry <runId>");
        await dlqCli("retry", second, opts);
      } else {
        // `dlq frob run_x`: not a run id followed by another, but a word dlq does not know.
        if (second !== undefined) throw new CliError(`sluice dlq takes a run id, or \`retry <runId>\`; got "${first} ${second}"`);
        await dlqCli("list", first, opts);
      }
    });
}
