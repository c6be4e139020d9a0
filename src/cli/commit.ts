import { Command } from "commander";
import { BOOKKEEPING_COLUMNS } from "../core/target.ts";
import { newRunId } from "../engine/runs.ts";
import { ledgersOfPipeline, ledgersOfRun } from "../inspect/ledgers.ts";
import { keyHistory, revertPlan, revertRun, revertTargetsElsewhere, targetsOf } from "../store/ledger.ts";
import { reviewQueue } from "../store/reviews.ts";
import { requireRun, revertsOf } from "../store/runs.ts";
import { CliError, loadPipeline, printJson, withStore } from "./common.ts";
import { resumeCli } from "./resume.ts";

/**
 * `sluice commit <runId>`: the run goes on with the review decisions recorded
 * since: approved and edited items are committed, rejected ones end
 * `rejected`. `sluice revert <runId>` restores what a run wrote to its
 * targets, from the ledger; `sluice history <pipeline> <key>` shows a row's past.
 */
export async function commitCli(runId: string, options: { json?: boolean; env?: NodeJS.ProcessEnv } = {}) {
  const queue = await withStore(options.env, async (db) => {
    await requireRun(db, runId);
    return reviewQueue(db, runId, { decided: true });
  });
  // Decisions taken on already (by an earlier commit) are not taken on again.
  const decided = queue.filter((q) => q.decision && !q.applied).length;
  const waiting = queue.filter((q) => !q.decision).length;
  process.stderr.write(`run ${runId}: ${decided} reviewed item(s) to take on${waiting ? `, ${waiting} still wait for review` : ""}\n`);
  return resumeCli(runId, options);
}

export async function revertCli(runId: string, options: { force?: boolean; json?: boolean; pipeline?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  return withStore(options.env, async (db) => {
    const run = await requireRun(db, runId);
    // Reverted already, and not put back since (by reverting that revert): there is nothing of the run's left to undo.
    const [reverted] = await revertsOf(db, runId);
    if (reverted && (await revertsOf(db, reverted)).length === 0) {
      throw new CliError(`run ${runId} is already reverted (by run ${reverted}); \`sluice revert ${reverted}\` puts its rows back`);
    }
    // A target in another database is reached through the URL in the pipeline's definition.
    const ledgers = await ledgersOfRun(db, run, () => loadPipeline(options.pipeline ?? run.pipeline, options.cwd));
    const plans = [];
    for (const ledger of ledgers) plans.push(...(await revertPlan(ledger, runId)));
    if (plans.length === 0) throw new CliError(`run ${runId} wrote nothing to a target: nothing to revert`);
    const conflicts = plans.flatMap((p) => p.conflicts.map((k) => `${p.target}:${k}`));
    if (conflicts.length && !options.force) {
      throw new CliError(
        `later runs changed ${conflicts.length} of the rows run ${runId} wrote (${conflicts.slice(0, 3).join(", ")}${conflicts.length > 3 ? ", ..." : ""}); revert those runs first (newest first), or --force to overwrite their changes`,
      );
    }
    const revertRunId = newRunId();
    // Targets in other databases first, each in a transaction there; then the store's, with the revert run recorded.
    const done = [];
    for (const ledger of ledgers.slice(1)) done.push(...(await revertTargetsElsewhere(ledger, runId, revertRunId)));
    done.push(...(await revertRun(db, runId, { revertRunId, pipeline: run.pipeline })));
    const result = { runId: revertRunId, reverted: runId, targets: done, overwritten: options.force ? conflicts.length : 0 };
    if (options.json) printJson(result);
    else {
      for (const t of done) process.stdout.write(`${t.target}: ${t.restored} row(s) restored, ${t.deleted} removed\n`);
      process.stdout.write(`reverted run ${runId} as run ${revertRunId}${result.overwritten ? ` (overwrote ${result.overwritten} later change(s))` : ""}\n`);
    }
    return result;
  });
}

export async function historyCli(pipelineOrFile: string, key: string, options: { json?: boolean; env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  return withStore(options.env, async (db) => {
    // Targets kept in other databases are found from the pipeline's definition, when it is here to load.
    const definition = await loadPipeline(pipelineOrFile, options.cwd).catch(() => undefined);
    const pipeline = definition?.id ?? pipelineOrFile;
    const entries = [];
    let targets = 0;
    for (const ledger of await ledgersOfPipeline(db, definition)) {
      const names = ledger.tables ?? (await targetsOf(db, pipeline));
      targets += names.length;
      for (const target of names) for (const e of await keyHistory(ledger.db, target, key)) entries.push({ target, ...e });
    }
    if (targets === 0) throw new CliError(`no run of pipeline ${pipeline} has written a target`);
    entries.sort((a, b) => new Date(a.at).getTime() - new Date(b.at).getTime());
    if (options.json) return printJson(entries);
    if (entries.length === 0) return void process.stdout.write(`${pipeline}: no row with key ${key} was ever written\n`);
    for (const e of entries) {
      const before = rowContent(e.before);
      const after = rowContent(e.after);
      const status = e.after ? String(e.after.status) : "deleted";
      process.stdout.write(`${new Date(e.at).toISOString()}  ${e.run_id}  ${e.op.padEnd(8)} ${status.padEnd(9)} ${changes(before, after)}\n`);
    }
  });
}

/** What a target row holds: its `data`, or (a typed target) its columns besides sluice's bookkeeping. */
function rowContent(row: Record<string, unknown> | null): Record<string, unknown> | null {
  if (!row) return null;
  if ("data" in row) return row.data as Record<string, unknown>;
  return Object.fromEntries(Object.entries(row).filter(([k]) => !(BOOKKEEPING_COLUMNS as readonly string[]).includes(k)));
}

/** The fields that differ between two rows' data, as `field: before -> after`. */
function changes(before: Record<string, unknown> | null, after: Record<string, unknown> | null): string {
  if (!before) return after ? JSON.stringify(after) : "";
  if (!after) return "(row removed)";
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  const diff = keys.filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k])).map((k) => `${k}: ${JSON.stringify(before[k])} -> ${JSON.stringify(after[k])}`);
  return diff.length ? diff.join(", ") : "(data unchanged)";
}

export function commitCommand(): Command {
  return new Command("commit")
    .argument("<runId>")
    .option("--json", "print the run summary as one JSON object on the last stdout line")
    .action(async (runId: string, opts: { json?: boolean }) => {
      await commitCli(runId, opts);
    });
}

export function revertCommand(): Command {
  return new Command("revert")
    .argument("<runId>")
    .option("--force", "revert even rows later runs changed since (their changes are overwritten)")
    .option("--pipeline <file>", "the pipeline's definition, when it is not pipelines/<id>.ts (needed for a target in another database, target.url)")
    .option("--json", "print JSON")
    .action(async (runId: string, opts: { force?: boolean; json?: boolean; pipeline?: string }) => {
      await revertCli(runId, opts);
    });
}

export function historyCommand(): Command {
  return new Command("history")
    .argument("<pipeline>", "a pipeline id, or the path of its definition")
    .argument("<key>")
    .option("--json", "print JSON")
    .action(async (pipeline: string, key: string, opts: { json?: boolean }) => {
      await historyCli(pipeline, key, opts);
    });
}
