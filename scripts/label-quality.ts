/**
 * Label quality of a ticket-triage run: its `classify` outputs against the
 * intended category written beside every generated ticket
 * (examples/data/tickets.labels.csv). `npm run label-quality [runId]`
 * (default: the latest finished ticket-triage run in the store the CLI uses).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { sql } from "drizzle-orm";
import { openStore } from "../src/cli/common.ts";

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
    const runId =
      process.argv[2] ??
      (await db.rows<{ id: string }>(sql`SELECT id FROM runs WHERE pipeline = 'ticket-triage' AND status = 'finished' ORDER BY created_at DESC LIMIT 1`))[0]?.id;
    if (!runId) throw new Error("no finished ticket-triage run: npm run demo first");
    const rows = await db.rows<{ item_id: string; category: string }>(sql`
      SELECT w.item_id, o.output->>'category' AS category FROM work w JOIN stage_outputs o ON o.id = w.output_id
      WHERE w.run_id = ${runId} AND w.stage_id = 'classify'`);
    const labels = readFileSync(join(import.meta.dirname, "..", "examples", "data", "tickets.labels.csv"), "utf8");
    const q = labelQuality(runId, new Map(rows.map((r) => [r.item_id, r.category])), labels);
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
