import { defineStage, type JsonObject, type StageInput } from "sluice/core";

/**
 * Idempotent upsert into `table`, keyed by `key`: re-running writes nothing
 * twice, unchanged rows are not touched, and rows of items that stop reaching
 * this stage are marked withdrawn.
 *
 * @example
 * upsertCommit({ id: "commit", table: "ticket_triage", key: "ticket_id", row: ({ itemId }) => ({ ticket_id: itemId }) });
 */
export function upsertCommit<Item>(options: { id: string; table: string; key: string; codeVersion?: string; row: (input: StageInput<Item>) => JsonObject }) {
  return defineStage({
    id: options.id,
    kind: "commit",
    codeVersion: options.codeVersion,
    target: { table: options.table, key: options.key },
    row: options.row,
  });
}
