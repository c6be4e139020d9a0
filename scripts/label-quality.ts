/**
 * Label quality of a ticket-triage run: its `classify` outputs against the
 * intended category written beside every generated ticket
 * (examples/data/tickets.labels.csv). `npm run label-quality [runId]`
 * (default: the latest finished ticket-triage run in the store the CLI uses).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { openStore } from "../src/cli/common.ts";
import { outputField } from "../src/store/reports.ts";
import { latestFinishedRun } from "../src/store/runs.ts";

export interface LabelQuality {
  runId: string;
  compared: number;
  agreed: number;
  accuracy: number;
  /** intended → predicted → count, for the tickets that reached classify. */
  confusion: Record<string, Record<string, number>>;
}

export function labelQuality(runId: string, predicted: Map<string, string>, labelsCsv: string): LabelQuality {
  const labels = parse(labelsCsv, { columns: true, bom: true }) as { id: string; intended_category: string }[];
  const confusion: Record<string, Record<string, number>> = {};
  let compared = 0;
  let agreed = 0;
  for (const { id, intended_category: intended } of labels) {
    const got = predicted.get(id);
    if (got === undefined) continue;
    compared++;
    if (got === intended) agreed++;
    confusion[intended] ??= {};
    confusion[intended]![got] = (confusion[intended]![got] ?? 0) + 1;
  }
  return { runId, compared, agreed, accuracy: compared ? agreed / compared : 0, confusion };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const db = await openStore();
  try {
    const runId = process.argv[2] ?? (await latestFinishedRun(db, "ticket-triage"))?.id;
    if (!runId) throw new Error("no finished ticket-triage run: npm run demo first");
    const rows = await outputField(db, runId, "classify", "category");
    const labels = readFileSync(join(import.meta.dirname, "..", "examples", "data", "tickets.labels.csv"), "utf8");
    const q = labelQuality(runId, new Map(rows.map((r) => [r.item_id, r.value as string])), labels);
    console.log(`run ${q.runId}: ${q.agreed} of ${q.compared} classified tickets match their intended category (${(q.accuracy * 100).toFixed(1)}%)`);
    const cats = [...new Set(Object.values(q.confusion).flatMap((r) => Object.keys(r)))].sort();
    console.log(`\n${"intended \\ predicted".padEnd(22)}${cats.map((c) => c.padStart(9)).join("")}`);
    for (const [intended, row] of Object.entries(q.confusion).sort()) {
      console.log(`${intended.padEnd(22)}${cats.map((c) => String(row[c] ?? 0).padStart(9)).join("")}`);
    }
  } finally {
    await db.close();
  }
}
