import { defineStage, type CommitStage, type JsonObject, type JsonSchema, type ReadOutputs, type StageInput, type StageRead } from "sluice/core";

/**
 * Idempotent upsert into `table`, keyed by `key`: re-running writes nothing
 * twice, unchanged rows are not touched, and rows of items that stop reaching
 * this stage are marked withdrawn. With `columns` (a JSON Schema of the row),
 * the table has typed columns instead of `data jsonb`; `table` may be
 * `schema.table`. With `url` (a Postgres URL, read from the environment),
 * the table and its ledger live in that database instead of the store.
 *
 * @example
 * upsertCommit({ id: "commit", table: "ticket_triage", key: "ticket_id", reads: [classify], row: ({ itemId, outputs }) => ({ ticket_id: itemId, category: outputs.classify.category }) });
 */
export function upsertCommit<Item = any, const Id extends string = string, Row extends JsonObject = JsonObject, const R extends readonly StageRead[] = readonly StageRead[]>(options: {
  id: Id;
  table: string;
  key: string;
  columns?: JsonSchema;
  url?: string;
  codeVersion?: string;
  reads?: R;
  row: (input: StageInput<Item, ReadOutputs<R>>) => Row;
}): CommitStage<Item, Row, ReadOutputs<R>, Id> & { reads?: R } {
  const stage: CommitStage<Item, Row, ReadOutputs<R>, Id> & { reads?: R } = {
    id: options.id,
    kind: "commit",
    codeVersion: options.codeVersion,
    target: {
      table: options.table,
      key: options.key,
      ...(options.columns ? { columns: options.columns } : {}),
      ...("url" in options ? { url: options.url } : {}),
    },
    row: options.row,
  };
  if (options.reads) stage.reads = options.reads;
  return defineStage(stage);
}
