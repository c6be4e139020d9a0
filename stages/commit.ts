import { defineStage, type JsonObject, type JsonSchema, type StageInput } from "sluice/core";

/**
 * Idempotent upsert into `table`, keyed by `key`: re-running writes nothing
 * twice, unchanged rows are not touched, and rows of items that stop reaching
 * this stage are marked withdrawn. With `columns` (a JSON Schema of the row),
 * the table has typed columns instead of `data jsonb`; `table` may be
 * `schema.table`. With `url` (a Postgres URL, read from the environment),
 * the table and its ledger live in that database instead of the store.
 *
 * @example
 * upsertCommit({ id: "commit", table: "ticket_triage", key: "ticket_id", row: ({ itemId }) => ({ ticket_id: itemId }) });
 */
export function upsertCommit<Item>(options: { id: string; table: string; key: string; columns?: JsonSchema; url?: string; codeVersion?: string; row: (input: StageInput<Item>) => JsonObject }) {
  return defineStage({
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
  });
}
