import { Command } from "commander";
import { readFileSync } from "node:fs";
import { decide, FIELD_NAME, listReview, parseEdits, type DecideOptions, type ReviewFilter } from "../inspect/review.ts";
import { reviewItem, type Decision, type QueueRow } from "../store/reviews.ts";
import { requireRun, type RunRow } from "../store/runs.ts";
import type { PipelineDef } from "../core/types.ts";
import { CliError, loadPipeline, printJson, withStore } from "./common.ts";

/**
 * `sluice review`: what the validator (or a model stage's business rule)
 * doubted, for a person to decide. `list` shows what waits, `show` one item
 * with its input, every stage's output, the reasons and the attempts;
 * `approve`, `reject` and `edit` record decisions, singly or in bulk by
 * filter. Decisions take effect when the run goes on: `sluice commit <runId>`
 * (or `resume`) commits approved and edited items; rejected items end
 * `rejected`.
 */

/**
 * The run's pipeline as defined now (from the file it was started with, or
 * `pipelines/<id>.ts`), so a decision is checked against it (see `decide`);
 * none when it cannot be loaded (the decision is then recorded unchecked).
 */
export async function runPipelineDef(run: RunRow): Promise<PipelineDef | undefined> {
  const file = typeof run.options.pipelineFile === "string" ? run.options.pipelineFile : undefined;
  return loadPipeline(file ?? run.pipeline).catch(() => undefined);
}

/** `decide`'s options, and `--json` and the environment for the command. */
export interface DecideCliOptions extends DecideOptions {
  json?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** `--set field=value`: the value as JSON when it reads as JSON (numbers, null, booleans, quoted strings), else as text. */
export function parseSet(pairs: readonly string[]): Record<string, unknown> {
  try {
    return parseEdits(pairs);
  } catch (err) {
    throw new CliError(`--set ${(err as Error).message}`);
  }
}

function readEdits(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new CliError(`cannot read edits from ${file}: ${(err as Error).message.split("\n")[0]}`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new CliError(`edits in ${file} must be one JSON object of field: value`);
  for (const field of Object.keys(parsed)) {
    if (!FIELD_NAME.test(field)) throw new CliError(`edits in ${file}: field names are letters, digits and _, got "${field}"`);
  }
  return parsed as Record<string, unknown>;
}

function printQueue(runId: string, rows: QueueRow[]): void {
  if (rows.length === 0) {
    process.stdout.write(`run ${runId}: nothing waits for review\n`);
    return;
  }
  const pending = rows.filter((r) => !r.decision).length;
  const decided = rows.filter((r) => r.decision && !r.applied).length;
  const taken = rows.length - pending - decided;
  process.stdout.write(
    `run ${runId}: ${pending} item(s) wait for review${decided ? `, ${decided} decided (taken up by \`sluice commit ${runId}\`)` : ""}${taken ? `, ${taken} decided and taken up` : ""}\n`,
  );
  const w = Math.max(7, ...rows.map((r) => r.item_id.length));
  for (const r of rows) {
    const state = r.decision ? `${r.decision} (${r.reviewer})${r.applied ? ", taken up" : ""}` : "waiting";
    process.stdout.write(`${r.item_id.padEnd(w)}  ${r.stage_id.padEnd(10)} ${state.padEnd(18)} ${r.reason ?? ""}\n`);
  }
}

export function reviewCommand(): Command {
  const review = new Command("review");
  const filters = (c: Command) =>
    c.option("--stage <id>", "only items this stage sent to review").option("--reason <text>", "only items whose reason contains this text (case-insensitive)");
  const decideCommand = (name: Decision, description: string) =>
    filters(
      new Command(name)
        .description(description)
        .argument("<runId>")
        .argument("[itemIds...]", "items to decide (default: those chosen by --stage, --reason or --all)"),
    )
      .option("--all", "every item that waits for review in the run")
      .option("--by <name>", "who decides (default: the OS user)")
      .option("--note <text>", "a note kept with the decision")
      .option("--json", "print the items decided as JSON");

  review.addCommand(
    filters(new Command("list").description("what waits for review in a run, with the reason").argument("<runId>"))
      .option("--decided", "include items decided since (not yet committed)")
      .option("--json", "print JSON")
      .action(async (runId: string, opts: ReviewFilter & { decided?: boolean; json?: boolean }) => {
        const rows = await withStore(undefined, (db) => listReview(db, runId, opts));
        if (opts.json) printJson(rows);
        else printQueue(runId, rows);
      }),
  );
  review.addCommand(
    new Command("show")
      .description("one item: its input, every stage's status and output, the reasons, and every model attempt")
      .argument("<runId>")
      .argument("<itemId>")
      .option("--json", "print JSON")
      .action(async (runId: string, itemId: string, opts: { json?: boolean }) => {
        const item = await withStore(undefined, async (db) => {
          await requireRun(db, runId);
          return reviewItem(db, runId, itemId);
        });
        if (!item) throw new CliError(`run ${runId} has no item ${itemId}`);
        if (opts.json) return printJson(item);
        const out: string[] = [`item ${itemId} in run ${runId}`, "", "input:", indent(JSON.stringify(item.input, null, 2)), ""];
        for (const s of item.stages) {
          out.push(`${s.stage_id}: ${s.status}${s.reused ? " (reused)" : ""}${s.error_message ? `: ${s.error_message}` : ""}`);
          if (s.output !== null && s.output !== undefined) out.push(indent(JSON.stringify(s.output, null, 2)));
        }
        if (item.attempts.length) {
          out.push("", "attempts:");
          for (const a of item.attempts) {
            out.push(`  ${a.stage_id} #${a.attempt} ${a.mode} ${a.model ?? ""} ${a.input_tokens}+${a.output_tokens} tokens $${Number(a.cost_usd).toFixed(6)}${a.error_class ? ` ${a.error_class}: ${a.error_message}` : ""}`);
          }
        }
        process.stdout.write(`${out.join("\n")}\n`);
      }),
  );
  const act = (decision: Decision) => async (runId: string, itemIds: string[], opts: DecideCliOptions & { set?: string[]; file?: string }) => {
    if (decision === "edit") {
      if (itemIds.length === 0) throw new CliError("name the items to edit: sluice review edit <runId> <itemId...> --set field=value");
      const edits = { ...(opts.file ? readEdits(opts.file) : {}), ...parseSet(opts.set ?? []) };
      if (Object.keys(edits).length === 0) throw new CliError("say what to change: --set field=value (repeatable) or --file edits.json");
      opts.edits = edits;
    }
    const decided = await withStore(undefined, async (db) => {
      opts.pipeline = await runPipelineDef(await requireRun(db, runId));
      return decide(db, runId, decision, itemIds, opts);
    });
    if (opts.json) printJson(decided.map((d) => ({ itemId: d.item_id, stage: d.stage_id, decision })));
    else process.stdout.write(`${{ approve: "approved", reject: "rejected", edit: "edited" }[decision]} ${decided.length} item(s) of run ${runId}; \`sluice commit ${runId}\` takes them on\n`);
  };
  review.addCommand(decideCommand("approve", "approve items: they go on to commit as they are").action(act("approve")));
  review.addCommand(decideCommand("reject", "reject items: they end `rejected` and are not committed").action(act("reject")));
  review.addCommand(
    decideCommand("edit", "correct fields of items' committed rows, then approve them")
      .option("--set <field=value...>", "a field of the committed row and its value (JSON, or text)")
      .option("--file <edits.json>", "a JSON object of field: value")
      .action(act("edit")),
  );
  return review;
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}
