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

/** Agreement with people for one label field, overall and per label (the label people gave). */
export interface HumanAgreement {
  field: string;
  compared: number;
  same: number;
  agreement: number;
  byLabel: { label: string; compared: number; same: number; agreement: number }[];
}

/**
 * The labels people gave, by item: for each item approved or edited (a
 * rejection says the model was wrong, not what is right), the labelled
 * stage's output as it was reviewed, with the reviewer's edits of the same
 * fields laid over.
 */
export function humanLabels(items: readonly { item_id: string; decision: string; edits: Record<string, unknown> | null; outputs: Record<string, unknown> | null }[], stageId: string, fields: string[]): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  for (const item of items) {
    if (item.decision === "reject") continue;
    const labels = labelsOf(item.outputs?.[stageId], fields);
    for (const [k, v] of Object.entries(item.edits ?? {})) if (typeof v === "string" && (k in labels || fields.includes(k))) labels[k] = v;
    if (Object.keys(labels).length) out.set(item.item_id, { ...out.get(item.item_id), ...labels });
  }
  return out;
}

/** How often outputs carry the labels people gave, per field and per label. */
export function agreementWithPeople(fields: string[], people: Map<string, Record<string, string>>, outputs: Map<string, { output: unknown }>): HumanAgreement[] {
  const byField = new Map<string, Map<string, { compared: number; same: number }>>();
  for (const [itemId, labels] of people) {
    const got = outputs.get(itemId);
    if (!got) continue;
    const model = labelsOf(got.output, fields);
    for (const [field, label] of Object.entries(labels)) {
      if (model[field] === undefined) continue;
      let perLabel = byField.get(field);
      if (!perLabel) byField.set(field, (perLabel = new Map()));
      const c = perLabel.get(label) ?? { compared: 0, same: 0 };
      c.compared++;
      if (model[field] === label) c.same++;
      perLabel.set(label, c);
    }
  }
  return [...byField.entries()].map(([field, perLabel]) => {
    const byLabel = [...perLabel.entries()].map(([label, c]) => ({ label, ...c, agreement: c.same / c.compared })).sort((a, b) => b.compared - a.compared || a.label.localeCompare(b.label));
    const compared = byLabel.reduce((s, l) => s + l.compared, 0);
    const same = byLabel.reduce((s, l) => s + l.same, 0);
    return { field, compared, same, agreement: compared ? same / compared : 1, byLabel };
  });
}
