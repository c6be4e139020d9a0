import { sql, type SQL } from "drizzle-orm";

/**
 * Fragments the store's statements share. They exist for the planner as much
 * as for the text: each is shaped so Postgres keeps using the primary-key
 * indexes however large a run grows.
 */

/**
 * `= ANY(...)` over a list passed as one `text[]` parameter. An array (not
 * `IN (SELECT ...)`) lets the planner use the primary-key index instead of a
 * hash join over the whole run.
 */
export function anyText(values: readonly string[]): SQL {
  // A constant array (not a subquery) so the planner can use it as an index
  // condition: one probe per value instead of filtering every row of the prefix.
  return sql`ANY(${textArray(values)}::text[])`;
}

/** `= ANY(...)` over integers, as a constant array the planner can use as an index condition. */
export function anyInt(values: readonly number[]): SQL {
  if (!values.every(Number.isInteger)) throw new TypeError(`not integers: ${values.join(", ")}`);
  return sql`ANY(${`{${values.join(",")}}`}::int[])`;
}

/**
 * The ids as rows, `i(item_id)`, to drive per-id lookups: `CROSS JOIN LATERAL
 * (SELECT ... WHERE ... AND item_id = i.item_id OFFSET 0)`. The `OFFSET 0`
 * keeps each lookup a primary-key probe whatever the planner's statistics say:
 * with stale ones it would otherwise scan a whole stage (or every output of
 * a stage version) for each chunk, which grows with the run.
 */
export function idRows(values: readonly string[]): SQL {
  return sql`unnest(${textArray(values)}::text[]) AS i(item_id)`;
}

/** A Postgres array literal: every element quoted, backslashes and quotes escaped. */
export function textArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`).join(",")}}`;
}
