/**
 * Label tables for classify-like stages: for each enum field of the output,
 * how many items kept their label and which moved from what to what. Shared
 * by `sluice diff` (run against run) and `sluice compare` (committed version
 * against the current definition).
 */

export interface LabelTable {
  field: string;
  /** Items with a label in both. */
  compared: number;
  same: number;
  /** `same / compared` (1 when nothing was compared). */
  agreement: number;
  /** Changed labels only, most frequent first. */
  table: { from: string; to: string; count: number }[];
}

/** Every top-level string field, for a classify stage with no declared schema. */
const ALL_STRINGS = "*";

/**
 * The output fields to tabulate: the enum properties of the stage's output
 * schema (from the version parts a run recorded); for a `classify` stage
 * without a schema, every top-level string field.
 *
 * @example
 * enumFields("classify", versionParts(classifyStage)); // ["category"]
 */
export function enumFields(kind: string, parts: Record<string, unknown>): string[] {
  const schema = (parts.schema as { schema?: { properties?: Record<string, { enum?: unknown }> } } | undefined)?.schema;
  const fromSchema = Object.entries(schema?.properties ?? {})
    .filter(([, p]) => Array.isArray(p?.enum))
    .map(([name]) => name);
  if (fromSchema.length) return fromSchema;
  return kind === "classify" ? [ALL_STRINGS] : [];
}

function labelsOf(output: unknown, fields: string[]): Record<string, string> {
  if (output === null || typeof output !== "object" || Array.isArray(output)) return {};
  const record = output as Record<string, unknown>;
  const names = fields.includes(ALL_STRINGS) ? Object.keys(record).filter((k) => typeof record[k] === "string") : fields;
  const out: Record<string, string> = {};
  for (const name of names) if (typeof record[name] === "string") out[name] = record[name];
  return out;
}

/** True when two outputs carry different labels in any of the fields. */
export function labelsDiffer(fields: string[], a: unknown, b: unknown): boolean {
  const la = labelsOf(a, fields);
  const lb = labelsOf(b, fields);
  return [...new Set([...Object.keys(la), ...Object.keys(lb)])].some((k) => la[k] !== lb[k]);
}

/**
 * Label transitions between two sets of outputs keyed by item id; only items
 * with an output on both sides count.
 *
 * @example
 * labelTable(["category"], before, after)[0]; // { field: "category", compared: 40, same: 37, agreement: 0.925, table: [...] }
 */
export function labelTable(fields: string[], before: Map<string, { output: unknown }>, after: Map<string, { output: unknown }>): LabelTable[] {
  const tables = new Map<string, { compared: number; same: number; moves: Map<string, number> }>();
  for (const [itemId, a] of before) {
    const b = after.get(itemId);
    if (!b) continue;
    const la = labelsOf(a.output, fields);
    const lb = labelsOf(b.output, fields);
    for (const field of Object.keys(la)) {
      if (lb[field] === undefined) continue;
      let t = tables.get(field);
      if (!t) tables.set(field, (t = { compared: 0, same: 0, moves: new Map() }));
      t.compared++;
      if (la[field] === lb[field]) t.same++;
      else {
        const key = JSON.stringify([la[field], lb[field]]);
        t.moves.set(key, (t.moves.get(key) ?? 0) + 1);
      }
    }
  }
  return [...tables.entries()].map(([field, t]) => ({
    field,
    compared: t.compared,
    same: t.same,
    agreement: t.compared ? t.same / t.compared : 1,
    table: [...t.moves.entries()]
      .map(([key, count]) => {
        const [from, to] = JSON.parse(key) as [string, string];
        return { from, to, count };
      })
      .sort((x, y) => y.count - x.count || x.from.localeCompare(y.from) || x.to.localeCompare(y.to)),
  }));
}
