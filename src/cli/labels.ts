import { Command } from "commander";
import { writeFileSync } from "node:fs";
import { stringify } from "csv-stringify/sync";
import { versionParts } from "../core/define.ts";
import type { PipelineDef } from "../core/types.ts";
import { enumFields, humanLabels } from "../inspect/labels.ts";
import { labelledItems } from "../store/reviews.ts";
import { CliError, loadPipeline, withStore } from "./common.ts";

/**
 * `sluice labels export <pipeline>`: the review decisions as a labelled set,
 * one record per item a person decided: the item, the decision (who, when,
 * why), and the labels of the labelled stage as people left them (the
 * model's labels they approved, or the ones they set). JSONL (with the whole
 * item) or CSV (one column per label and per item field).
 */

/** The stage whose labels a labelled set carries: the one named, or the first with enum-valued outputs. */
export function labelledStage(pipeline: PipelineDef, stageId?: string): { id: string; fields: string[] } {
  const candidates = pipeline.stages.map((s) => ({ id: s.id, fields: enumFields(s.kind, versionParts(s)) }));
  const found = stageId ? candidates.find((c) => c.id === stageId) : candidates.find((c) => c.fields.length > 0);
  if (!found) throw new CliError(stageId ? `pipeline ${pipeline.id} has no stage "${stageId}"` : `pipeline ${pipeline.id} has no stage with labels (an enum in its output schema): name one with --stage`);
  if (found.fields.length === 0) throw new CliError(`stage ${found.id} has no labels (an enum in its output schema)`);
  return found;
}

export async function exportLabels(pipelineName: string, options: { stage?: string; format?: string; out?: string; env?: NodeJS.ProcessEnv }): Promise<number> {
  const format = options.format ?? "jsonl";
  if (format !== "jsonl" && format !== "csv") throw new CliError(`--format is jsonl or csv, got "${format}"`);
  const pipeline = await loadPipeline(pipelineName);
  const stage = labelledStage(pipeline, options.stage);
  const items = await withStore(options.env, (db) => labelledItems(db, pipeline.id));
  const labels = humanLabels(items, stage.id, stage.fields);
  const records = items.map((item) => ({
    item_id: item.item_id,
    labels: item.decision === "reject" ? null : (labels.get(item.item_id) ?? null),
    decision: item.decision,
    reviewed_stage: item.stage_id,
    reviewer: item.reviewer,
    decided_at: new Date(item.decided_at).toISOString(),
    note: item.note,
    edits: item.edits,
    run_id: item.run_id,
    input: item.input,
  }));
  let text: string;
  if (format === "jsonl") {
    text = records.map((r) => JSON.stringify(r)).join("\n") + (records.length ? "\n" : "");
  } else {
    const inputFields = [...new Set(records.flatMap((r) => Object.keys((r.input as Record<string, unknown>) ?? {})))];
    const labelFields = [...new Set([...labels.values()].flatMap((l) => Object.keys(l)))];
    const rows = records.map((r) => [
      r.item_id,
      ...labelFields.map((f) => r.labels?.[f] ?? ""),
      r.decision,
      r.reviewed_stage,
      r.reviewer,
      r.decided_at,
      r.note ?? "",
      r.edits ? JSON.stringify(r.edits) : "",
      ...inputFields.map((f) => {
        const v = (r.input as Record<string, unknown> | null)?.[f];
        return v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v);
      }),
    ]);
    text = stringify(rows, { header: true, columns: ["item_id", ...labelFields.map((f) => `label.${f}`), "decision", "reviewed_stage", "reviewer", "decided_at", "note", "edits", ...inputFields.map((f) => `item.${f}`)] });
  }
  if (options.out) writeFileSync(options.out, text);
  else process.stdout.write(text);
  process.stderr.write(`${records.length} decided item(s) of ${pipeline.id}, labels of stage ${stage.id} (${stage.fields.join(", ")})${options.out ? ` written to ${options.out}` : ""}\n`);
  return records.length;
}

export function labelsCommand(): Command {
  const labels = new Command("labels");
  labels.addCommand(
    new Command("export")
      .description("export review decisions as a labelled set (JSONL with the whole item, or CSV)")
      .argument("<pipeline>")
      .option("--stage <id>", "the stage whose labels to export (default: the first with an enum in its output)")
      .option("--format <format>", "jsonl or csv", "jsonl")
      .option("--out <file>", "write to a file instead of stdout")
      .action(async (pipeline: string, opts: { stage?: string; format?: string; out?: string }) => {
        await exportLabels(pipeline, opts);
      }),
  );
  return labels;
}
