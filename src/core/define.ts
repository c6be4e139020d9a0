import { checkTableName, checkTargetUrl, publicTargetUrl, targetColumns } from "./target.ts";
import { parseDuration } from "./duration.ts";
import { DefinitionError } from "./errors.ts";
import { hashValue } from "./hash.ts";
import { STAGE_KINDS, isLlmStage, type IdOf, type PipelineDef, type StageDef } from "./types.ts";

const ID = /^[a-z][a-z0-9_-]{0,62}$/;
/** A `{{outputs.<stage>...}}` slot of a prompt, and the stage it names. */
const OUTPUT_SLOT = /\{\{\s*outputs\.([a-zA-Z0-9_-]+)[a-zA-Z0-9_.-]*\s*\}\}/g;

/**
 * Declare a stage. An identity function for type inference: the returned value
 * is the plain descriptor, registered nowhere.
 *
 * @example
 * const filter = defineStage({
 *   id: "filter", kind: "filter", codeVersion: "1",
 *   run: ({ item }) => ({ keep: item.body.trim() !== "" }),
 * });
 */
export function defineStage<S extends StageDef>(stage: S): S {
  return stage;
}

/**
 * Declare a pipeline: a source of items and an ordered list of stages. Checks
 * the shape at once so a bad definition fails before any work starts.
 *
 * @example
 * export default definePipeline({
 *   id: "ticket-triage",
 *   source: { key: "id" },
 *   stages: [filter, classify, extract, validate, commit],
 * });
 */
export function definePipeline<const P extends PipelineDef>(pipeline: P & { stages: StagesInOrder<P["stages"]> }): P {
  checkPipeline(pipeline);
  return pipeline;
}

/**
 * The stages as given, except that a stage reading a stage that does not come
 * before it (by definition or by id) is replaced by a message saying so, so
 * `tsc` reports it where the stages are listed. Checked again at run time by
 * `checkPipeline`.
 */
export type StagesInOrder<S extends readonly unknown[], Seen extends string = never> = S extends readonly [infer Head, ...infer Rest]
  ? [ReadsBefore<Head, Seen>, ...StagesInOrder<Rest, Seen | IdOf<Head>>]
  : S;

type ReadsBefore<S, Seen extends string> = S extends { id: infer Id extends string; reads?: infer R }
  ? R extends readonly unknown[]
    ? string extends IdOf<R[number]>
      ? S
      : [Exclude<IdOf<R[number]>, Seen>] extends [never]
        ? S
        : `stage "${Id}" reads "${Exclude<IdOf<R[number]>, Seen> & string}", which does not come before it in stages`
    : S
  : S;

export function checkPipeline(pipeline: PipelineDef): void {
  const where = `pipeline ${JSON.stringify(pipeline.id)}`;
  if (!ID.test(pipeline.id ?? "")) {
    throw new DefinitionError(`${where}: id must match ${ID} (lowercase letters, digits, - and _)`);
  }
  for (const [name, value] of Object.entries(pipeline.budget ?? {})) {
    if (!["perRun", "perDay"].includes(name)) throw new DefinitionError(`${where}: budget has perRun and perDay, not ${name}`);
    if (value !== undefined && !(typeof value === "number" && Number.isFinite(value) && value > 0)) throw new DefinitionError(`${where}: budget.${name} is a positive amount in USD`);
  }
  if (!pipeline.source?.key) throw new DefinitionError(`${where}: source.key (the item id column) is required`);
  checkSourceSpec(pipeline, where);
  if (!Array.isArray(pipeline.stages) || pipeline.stages.length === 0) {
    throw new DefinitionError(`${where}: needs at least one stage`);
  }
  const seen = new Set<string>();
  pipeline.stages.forEach((stage, index) => {
    const at = `${where}, stage ${index + 1} (${JSON.stringify(stage.id)})`;
    if (!ID.test(stage.id ?? "")) throw new DefinitionError(`${at}: id must match ${ID}`);
    if (seen.has(stage.id)) throw new DefinitionError(`${at}: duplicate stage id`);
    if (!STAGE_KINDS.includes(stage.kind)) {
      throw new DefinitionError(`${at}: kind must be one of ${STAGE_KINDS.join(", ")}`);
    }
    for (const upstream of readIds(stage) ?? []) {
      if (!seen.has(upstream)) throw new DefinitionError(`${at}: reads "${upstream}", which is not an upstream stage`);
    }
    if (stage.kind === "commit") {
      if (!stage.target?.table || !stage.target.key) throw new DefinitionError(`${at}: commit needs target.table and target.key`);
      const badTable = checkTableName(stage.target.table);
      if (badTable) throw new DefinitionError(`${at}: ${badTable}`);
      // `url: process.env.X` with X unset must not quietly commit to the store instead.
      const badUrl = "url" in stage.target && stage.target.url === undefined ? "target.url is undefined (is the environment variable it reads set?)" : checkTargetUrl(stage.target.url);
      if (badUrl) throw new DefinitionError(`${at}: ${badUrl}`);
      if (stage.target.columns !== undefined) {
        try {
          targetColumns(stage.target.columns, stage.target.key);
        } catch (err) {
          throw new DefinitionError(`${at}: ${(err as Error).message}`);
        }
      }
      if (typeof stage.row !== "function") throw new DefinitionError(`${at}: commit needs a row() function`);
      const sample = stage.audit?.sample;
      if (stage.audit !== undefined && !(typeof sample === "number" && sample >= 0 && sample <= 1)) throw new DefinitionError(`${at}: audit.sample is a share of items between 0 and 1`);
    } else if (isLlmStage(stage)) {
      if (!stage.model) throw new DefinitionError(`${at}: an LLM stage needs a model`);
      if (!stage.prompt?.user) throw new DefinitionError(`${at}: an LLM stage needs prompt.user`);
      if (!stage.output?.schema || !stage.output.name) throw new DefinitionError(`${at}: an LLM stage needs output { name, schema }`);
      if (stage.deadline !== undefined) parseDuration(String(stage.deadline), `${at}: deadline`);
      const reads = readIds(stage) ?? [...seen];
      for (const text of [stage.prompt.system ?? "", stage.prompt.user]) {
        for (const [slot, id] of text.matchAll(OUTPUT_SLOT)) {
          if (!reads.includes(id!)) throw new DefinitionError(`${at}: prompt slot ${slot} names "${id}", which this stage does not read (it reads ${reads.length ? reads.join(", ") : "no stage"})`);
        }
      }
    } else if (typeof (stage as { run?: unknown }).run !== "function") {
      throw new DefinitionError(`${at}: a ${stage.kind} stage needs run() or an LLM prompt+model`);
    }
    seen.add(stage.id);
  });
}

/**
 * The stage version: a stable hash of everything that defines what the stage
 * produces for a given input (kind, codeVersion, prompt, model, provider,
 * parameters, output schema, commit target). Gates are not part of it: they
 * decide which items reach the stage, not what it makes of them. Functions are
 * not hashed (bundlers rewrite their source); bump `codeVersion` when code changes.
 */
export function stageVersion(stage: StageDef): string {
  return hashValue(versionParts(stage), 12);
}

/** The parts that make up a stage version, by name, so `sluice versions` can say what changed. */
export function versionParts(stage: StageDef): Record<string, unknown> {
  const parts: Record<string, unknown> = { kind: stage.kind, codeVersion: stage.codeVersion ?? null };
  // Only when given, so the versions of stages without settings stay as they were.
  if (stage.settings !== undefined) parts.settings = stage.settings;
  if (isLlmStage(stage)) {
    parts.provider = stage.provider ?? null;
    parts.model = stage.model;
    parts.prompt = stage.prompt;
    parts.params = stage.params ?? {};
    parts.schema = stage.output;
  }
  if (stage.kind === "commit") {
    // The URL without its password: changing a password is not a new version, and it never reaches the store.
    parts.target = stage.target.url === undefined ? stage.target : { ...stage.target, url: publicTargetUrl(stage.target.url) };
    if (stage.audit) parts.audit = stage.audit;
  }
  return parts;
}

/** Upstream stage ids a stage reads: its `reads`, or every stage before it. */
export function readsOf(pipeline: PipelineDef, index: number): string[] {
  const stage = pipeline.stages[index];
  if (!stage) throw new DefinitionError(`no stage at index ${index}`);
  return readIds(stage) ?? pipeline.stages.slice(0, index).map((s) => s.id);
}

/** The ids of the stages a stage names in `reads` (by definition or by id), or undefined when it names none. */
export function readIds(stage: StageDef): string[] | undefined {
  return stage.reads?.map((r) => (typeof r === "string" ? r : r.id));
}

const COLUMN = /^[a-z_][a-z0-9_]{0,62}$/;

/** A source reads one of a file given at run time, a table, a query or a glob; sensors need the source they watch. */
function checkSourceSpec(pipeline: PipelineDef, where: string): void {
  const source = pipeline.source;
  const kinds = (["table", "query", "glob"] as const).filter((k) => source[k] !== undefined);
  if (kinds.length > 1) throw new DefinitionError(`${where}: source has one of table, query or glob, not ${kinds.join(" and ")}`);
  if (source.table !== undefined) {
    const bad = checkTableName(source.table);
    if (bad) throw new DefinitionError(`${where}: ${bad.replace("target.table", "source.table")}`);
  }
  if (source.query !== undefined && !/^\s*(select|with)\b/i.test(source.query)) throw new DefinitionError(`${where}: source.query must be a SELECT (or WITH ... SELECT)`);
  if (source.table !== undefined || source.query !== undefined) {
    if (!source.cursor) throw new DefinitionError(`${where}: a table or query source needs cursor (updated_at, or a monotonically increasing id)`);
    if (!COLUMN.test(source.cursor)) throw new DefinitionError(`${where}: source.cursor must be a plain lowercase column name, got "${source.cursor}"`);
  } else if (source.cursor !== undefined) {
    throw new DefinitionError(`${where}: source.cursor applies to a table or query source`);
  }
  if (source.glob !== undefined && (typeof source.glob !== "string" || source.glob.trim() === "")) throw new DefinitionError(`${where}: source.glob must be a file pattern such as "inbox/*.jsonl"`);
  if (pipeline.onNewRows && source.table === undefined && source.query === undefined) throw new DefinitionError(`${where}: onNewRows needs a table or query source with a cursor`);
  if (pipeline.onNewFiles && source.glob === undefined) throw new DefinitionError(`${where}: onNewFiles needs a glob source`);
}

/** The sensors a pipeline declares, as words for a person. */
export function sensorsOf(pipeline: PipelineDef): string[] {
  const out: string[] = [];
  if (pipeline.schedule) out.push(`schedule "${pipeline.schedule.cron}"${pipeline.schedule.timezone ? ` (${pipeline.schedule.timezone})` : ""}`);
  if (pipeline.after) out.push(`after ${pipeline.after}`);
  if (pipeline.onNewRows) out.push(`onNewRows (${pipeline.source.table ?? "query"}, cursor ${pipeline.source.cursor})`);
  if (pipeline.onNewFiles) out.push(`onNewFiles (${pipeline.source.glob})`);
  return out;
}
