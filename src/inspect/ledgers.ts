import { SluiceError } from "../core/errors.ts";
import { publicTargetUrl } from "../core/target.ts";
import type { CommitStage, PipelineDef } from "../core/types.ts";
import type { Database } from "../store/database.ts";
import type { RunRow } from "../store/runs.ts";
import { targetDatabase } from "../store/target-databases.ts";

/**
 * Where a run's commit ledger lives: the store, and the database of each
 * target kept elsewhere (`target.url`), whose ledger lives with it. A run
 * records its targets' URLs without their passwords, so the URL to open
 * comes from the pipeline's definition, checked against what the run recorded.
 */
export async function ledgersOfRun(store: Database, run: RunRow, definition: () => Promise<PipelineDef>): Promise<Database[]> {
  const elsewhere = run.stages.filter((s) => s.kind === "commit" && typeof (s.parts.target as { url?: unknown } | undefined)?.url === "string");
  if (elsewhere.length === 0) return [store];
  const recordedUrl = (s: RunRow["stages"][number]) => (s.parts.target as { url: string }).url;
  let pipeline: PipelineDef;
  try {
    pipeline = await definition();
  } catch (err) {
    throw new SluiceError(`run ${run.id} wrote to a target in another database (${elsewhere.map(recordedUrl).join(", ")}), whose URL comes from pipeline ${run.pipeline}'s definition, which did not load: ${(err as Error).message} (give it with --pipeline <file>)`);
  }
  const dbs = [store];
  for (const s of elsewhere) {
    const url = (pipeline.stages.find((d) => d.id === s.id && d.kind === "commit") as CommitStage | undefined)?.target.url;
    if (url === undefined || publicTargetUrl(url) !== recordedUrl(s)) {
      throw new SluiceError(
        `run ${run.id} wrote stage ${s.id}'s target in ${recordedUrl(s)}, but pipeline ${run.pipeline} now defines ${url === undefined ? "no target.url" : publicTargetUrl(url)} for it: give the definition that wrote it (sluice revert --pipeline <file>), or set target.url (or its environment variable) back to reach that database`,
      );
    }
    const db = await targetDatabase(store, url);
    if (!dbs.includes(db)) dbs.push(db);
  }
  return dbs;
}

/**
 * Where a pipeline's commit ledgers live as it is defined now: the store
 * (`tables` undefined: the store knows which of its targets the pipeline's
 * runs wrote), and each database the pipeline's targets name, with the
 * tables it commits there.
 */
export async function ledgersOfPipeline(store: Database, pipeline: PipelineDef | undefined): Promise<{ db: Database; tables?: string[] }[]> {
  const places: { db: Database; tables?: string[] }[] = [{ db: store }];
  for (const stage of pipeline?.stages ?? []) {
    const target = stage.kind === "commit" ? (stage as CommitStage).target : undefined;
    if (target?.url === undefined) continue;
    const db = await targetDatabase(store, target.url);
    const place = places.find((p) => p.db === db);
    if (place) place.tables?.push(target.table);
    else places.push({ db, tables: [target.table] });
  }
  return places;
}
