/**
 * The plain descriptors that `definePipeline` and `defineStage` return. Nothing
 * here does I/O: the engine (`src/engine/`) runs these.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };
export type JsonObject = { [k: string]: JsonValue };
export type JsonSchema = { [k: string]: unknown };

export const STAGE_KINDS = ["filter", "classify", "extract", "validate", "commit", "map"] as const;
export type StageKind = (typeof STAGE_KINDS)[number];

/** Type-only key of the output type a `Schema` carries; never present at run time. */
export declare const outputType: unique symbol;

/**
 * A JSON Schema that carries the TypeScript type of the values it accepts, so
 * a stage's output type follows from its output schema. `npm run gen:types`
 * writes one for each file in `schemas/`, under the name of its type.
 */
export type Schema<T> = JsonSchema & { readonly [outputType]?: T };

/**
 * An upstream stage a stage reads: the stage itself (its output is then typed)
 * or its id (its output is `unknown`).
 */
export type StageRead = string | StageDef;

/** The id of a stage, or of a stage read by id. */
export type IdOf<S> = S extends { id: infer Id extends string } ? Id : S extends string ? S : never;

/**
 * What a stage hands the stages that read it: a model stage's output schema
 * type, a function stage's return, a validator's verdict, a commit's row.
 */
export type OutputOf<S> = S extends string
  ? unknown
  : S extends { kind: "commit"; row: (...args: any[]) => infer Row }
    ? Row
    : S extends { kind: "validate" }
      ? ValidationVerdict
      : S extends { output: { schema: infer Sch } }
        ? Sch extends { readonly [outputType]?: infer T } ? (unknown extends T ? unknown : T) : unknown
        : S extends { run: (...args: any[]) => infer R }
          ? Awaited<R>
          : unknown;

/**
 * The ids of the stages `S` depends on through chains of typed reads. A stage
 * without typed `reads` (it reads every stage before it, which the types do
 * not know) adds none.
 */
type KnownAncestors<S, Depth extends unknown[] = []> = Depth["length"] extends 12
  ? never
  : S extends { reads?: infer R }
    ? R extends readonly unknown[]
      ? number extends R["length"]
        ? never
        : IdOf<R[number]> | (R[number] extends infer X ? (X extends unknown ? KnownAncestors<X, [...Depth, 0]> : never) : never)
      : never
    : never;

/** The reads among `R` that no other read of `R` depends on (through typed reads): the frontier of `core/dag.ts`. */
type FrontierOf<R extends readonly unknown[]> = R[number] extends infer X
  ? X extends unknown
    ? IdOf<X> extends (R[number] extends infer Y ? (Y extends unknown ? KnownAncestors<Y> : never) : never) ? never : X
    : never
  : never;

/**
 * Whether every item that reached `X` went through `S`: `X` is `S`, or every
 * stage of `X`'s frontier is reached only through `S`. Not when `X` comes
 * before `S`. A stage without typed `reads` reads the one before it, which
 * the types do not know: taken as reached through `S`.
 */
type ThroughOnly<S, X, Depth extends unknown[] = []> = IdOf<X> extends IdOf<S>
  ? true
  : IdOf<X> extends KnownAncestors<S>
    ? false
    : Depth["length"] extends 12
      ? true
      : X extends { reads?: infer R }
        ? R extends readonly unknown[]
          ? number extends R["length"]
            ? true
            : [FrontierOf<R> extends infer F ? (F extends unknown ? (ThroughOnly<S, F, [...Depth, 0]> extends true ? never : F) : never) : never] extends [never]
              ? true
              : false
          : true
        : true;

/** True when every item reaching a stage that reads `R` went through `S` (it is not a branch the item may have skipped). */
type AlwaysRead<S, R extends readonly unknown[]> = [FrontierOf<R> extends infer F ? (F extends unknown ? (ThroughOnly<S, F> extends true ? never : F) : never) : never] extends [never] ? true : false;

/**
 * The `outputs` a stage sees, from its `reads`: each stage read by reference
 * under its id, with its output type. Stages read by id, or a stage without
 * `reads` (it reads every upstream stage), see `unknown` values. Where
 * branches meet, a branch an item may have skipped (validate reading
 * `[classify, billing, bugs]`: `billing` and `bugs`) is optional: its output
 * is `undefined` for an item the other branch carried.
 */
export type ReadOutputs<R extends readonly StageRead[]> = number extends R["length"]
  ? { readonly [id: string]: unknown }
  : Flat<{ readonly [S in R[number] as AlwaysRead<S, R> extends true ? IdOf<S> : never]: OutputOf<S> } & { readonly [S in R[number] as AlwaysRead<S, R> extends true ? never : IdOf<S>]?: OutputOf<S> }>;

type Flat<T> = { [K in keyof T]: T[K] } & {};

/** What every stage function and gate sees for one item. */
export interface StageInput<Item = JsonObject, Outputs = Record<string, unknown>> {
  /** The stable id taken from the source's key column. */
  itemId: string;
  item: Item;
  /** Outputs of the upstream stages this stage reads, by stage id. */
  outputs: Outputs;
}

/** A gate: an item for which it returns false is `gated_out` for this stage and the stages that go on only from it (another branch may still carry it; see `core/dag.ts`). */
export type Gate<Item = JsonObject, Outputs = Record<string, unknown>> = (input: StageInput<Item, Outputs>) => boolean;

interface StageBase<Item, Outputs, Id extends string> {
  id: Id;
  kind: StageKind;
  /** Bump when the code behind a deterministic stage changes; part of the stage version. */
  codeVersion?: string;
  /**
   * Data the stage's code is built from (a template's schemas, rule names,
   * thresholds): part of the stage version, so changing it reruns the stage
   * as a `codeVersion` bump does. Plain JSON.
   */
  settings?: unknown;
  /** A gate: an item for which it returns false is `gated_out` for this stage and the stages that go on only from it (another branch may still carry it; see `core/dag.ts`). */
  when?(input: StageInput<Item, Outputs>): boolean;
  /**
   * Upstream stages whose outputs this stage reads (and whose outputs enter its
   * input hash): the stage definitions (their outputs are then typed) or their
   * ids. Defaults to every upstream stage.
   */
  reads?: readonly StageRead[];
  description?: string;
}

/** A deterministic stage: a pure function of its input. */
export interface FunctionStage<Item = JsonObject, Out = unknown, Outputs = Record<string, unknown>, Id extends string = string> extends StageBase<Item, Outputs, Id> {
  kind: "filter" | "classify" | "extract" | "map";
  run(input: StageInput<Item, Outputs>): Out | Promise<Out>;
}

export interface PromptTemplate {
  system?: string;
  /** `{{item.subject}}`, `{{outputs.classify.category}}`, `{{itemId}}` are filled from the input. */
  user: string;
}

type Trim<S extends string> = S extends ` ${infer T}` ? Trim<T> : S extends `${infer T} ` ? Trim<T> : S;
type SlotsOf<S> = S extends `${string}{{${infer Slot}}}${infer Rest}` ? Trim<Slot> | SlotsOf<Rest> : never;
type PathFits<T, P extends string> = 0 extends 1 & T
  ? true
  : unknown extends T
    ? true
    : P extends `${infer Head}.${infer Rest}`
      ? Head extends keyof NonNullable<T> ? PathFits<NonNullable<T>[Head], Rest> : string extends keyof NonNullable<T> ? true : false
      : P extends keyof NonNullable<T> ? true : string extends keyof NonNullable<T> ? true : false;
type BadSlots<P, Ctx> = { [K in SlotsOf<P>]: PathFits<Ctx, K> extends true ? never : K }[SlotsOf<P>];

/**
 * Checks the `{{slots}}` of a prompt against what the stage sees: `unknown`
 * when each names an item field, `itemId`, or a field of a stage it reads;
 * else an object naming the first slot that does not, so `tsc` shows it.
 */
export type PromptCheck<P, Item, Outputs> = [BadSlots<P extends { user: infer U } ? U : never, { item: Item; outputs: Outputs; itemId: string }> | BadSlots<P extends { system?: infer S } ? S : never, { item: Item; outputs: Outputs; itemId: string }>] extends [never]
  ? unknown
  : { "a prompt slot names nothing this stage reads": `{{${BadSlots<P extends { user: infer U } ? U : never, { item: Item; outputs: Outputs; itemId: string }> | BadSlots<P extends { system?: infer S } ? S : never, { item: Item; outputs: Outputs; itemId: string }> & string}}}` };

export type ProviderName = "openai" | "anthropic" | "inprocess";
export type ProviderMode = "realtime" | "batch" | "auto";

export interface LlmParams {
  temperature?: number;
  maxTokens?: number;
  topP?: number;
}

/** An LLM-backed stage: prompt, model and output schema; the engine calls the provider. */
export interface LlmStage<Item = JsonObject, Out = unknown, Outputs = Record<string, unknown>, Id extends string = string> extends StageBase<Item, Outputs, Id> {
  kind: "classify" | "extract" | "map";
  provider?: ProviderName;
  model: string;
  prompt: PromptTemplate;
  /**
   * JSON Schema of the model's output; sent as the structured-output schema and
   * checked on return. A `Schema<T>` (see `schemas/types.ts`) types the output
   * the stages reading this one see.
   */
  output: { name: string; schema: Schema<Out> };
  params?: LlmParams;
  /**
   * `realtime` (default), `batch` (the provider's native batch API, half price,
   * results within 24 h) or `auto`: batch when enough items need a call and,
   * with a deadline, the provider's recent batch turnaround fits before it
   * (a batch still running near the deadline is cancelled and its unfinished
   * requests go out realtime).
   */
  mode?: ProviderMode;
  /** This stage's deadline, counted from the run's start: `"6h"`, `"90m"`. The run's own (`--deadline`) applies too. */
  deadline?: string;
  /** The same in minutes (kept for definitions written before `deadline`). */
  deadlineMinutes?: number;
  /** Optional business rule over the parsed output: return a message to reject it (a quality failure). */
  check?(output: Out, input: StageInput<Item, Outputs>): string | undefined;
}

export type ValidationVerdict =
  | { status: "valid" }
  | { status: "review"; reasons: string[] }
  | { status: "invalid"; reasons: string[] };

export interface ValidateStage<Item = JsonObject, Outputs = Record<string, unknown>, Id extends string = string> extends StageBase<Item, Outputs, Id> {
  kind: "validate";
  /** Schema and business rules over upstream outputs: valid, doubtful (review queue) or invalid. */
  run(input: StageInput<Item, Outputs>): ValidationVerdict | Promise<ValidationVerdict>;
}

export interface CommitStage<Item = JsonObject, Row extends JsonObject = JsonObject, Outputs = Record<string, unknown>, Id extends string = string> extends StageBase<Item, Outputs, Id> {
  kind: "commit";
  /**
   * Target table (`table`, or `schema.table`), created if absent and upserted
   * idempotently by `key`. With `columns` (a JSON Schema of the row), each
   * property is a typed column (migrated as properties are added) and every
   * row is checked against it; without, the row is kept as `data jsonb`.
   *
   * `url` puts the target in another Postgres database than the store (a
   * warehouse, the application's database): the table and its ledger live
   * there. Read it from the environment (`url: process.env.CRM_DATABASE_URL`)
   * rather than writing a password in code; sluice never stores or prints the
   * password (the stage version covers the URL without it).
   */
  target: { table: string; key: string; columns?: JsonSchema; url?: string };
  /**
   * A random audit: this share (0..1) of the items that would be committed
   * is sent to review first (`reason: audit sample`), the same items for the
   * same stage version, so people check what the validator passed.
   */
  audit?: { sample: number };
  /** The row to upsert for this item. Its `key` field must be present. */
  row(input: StageInput<Item, Outputs>): Row;
}

/**
 * Any stage. Its `outputs` are `unknown` by id: a stage sees them typed when
 * it names the stages it reads (`reads: [classify]`, through the templates of
 * `sluice/stages`).
 */
export type StageDef<Item = any> =
  | FunctionStage<Item, any>
  | LlmStage<Item, any>
  | ValidateStage<Item>
  | CommitStage<Item, any>;

export interface SourceSpec {
  /** The column (CSV) or field (JSONL) that holds the stable item id. */
  key: string;
  /** `csv` or `jsonl`; inferred from the file extension when absent. */
  format?: "csv" | "jsonl";
  /** JSON Schema the item must satisfy; a row that does not is quarantined. */
  schema?: JsonSchema;
  /** Items larger than this (serialized, bytes) are quarantined. Default 256 KiB. */
  maxItemBytes?: number;
  /**
   * Read items from a table of the store's database (`table` or `schema.table`)
   * instead of a file. With `cursor`, each run reads only the rows past the
   * cursor the pipeline's last finished run reached (kept in the store).
   */
  table?: string;
  /** Read items from a query (a `SELECT` over the store's database); needs `cursor`. */
  query?: string;
  /**
   * The column a table or query source advances on: `updated_at` (set on every
   * insert and update) or a monotonically increasing id. Unless it is the key,
   * it is left out of the item, so a row touched without change is reused.
   */
  cursor?: string;
  /** Read items from the files matching this glob (CSV or JSONL); a file read once is not read again until its content changes. */
  glob?: string;
}

export interface PipelineDef<Item = any> {
  id: string;
  description?: string;
  source: SourceSpec;
  stages: readonly StageDef<Item>[];
  /** Cron schedule, for the Trigger.dev runner and `sluice watch`; ignored by `sluice run`. */
  schedule?: { cron: string; timezone?: string };
  /** Run when another pipeline's commit stage finishes (Trigger.dev runner, and `sluice watch`). */
  after?: string;
  /** Run when a table or query source has rows past its cursor (`sluice watch` polls for them). */
  onNewRows?: boolean;
  /** Run when a glob source has a file not read yet (`sluice watch` polls for them). */
  onNewFiles?: boolean;
  /**
   * Spending caps in USD: `perRun` for each run (a run's `--budget` replaces
   * it), `perDay` across all of the pipeline's runs in a UTC day. A run that
   * reaches one stops paying and ends `budget_exhausted`, its items queued.
   */
  budget?: PipelineBudget;
}

export interface PipelineBudget {
  perRun?: number;
  perDay?: number;
}

export function isLlmStage(stage: StageDef): stage is LlmStage<any, any> {
  return "prompt" in stage && "model" in stage;
}
