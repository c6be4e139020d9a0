/**
 * The plain descriptors that `definePipeline` and `defineStage` return. Nothing
 * here does I/O: the engine (`src/engine/`) runs these.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };
export type JsonObject = { [k: string]: JsonValue };
export type JsonSchema = { [k: string]: unknown };

export const STAGE_KINDS = ["filter", "classify", "extract", "validate", "commit", "map"] as const;
export type StageKind = (typeof STAGE_KINDS)[number];

/** What every stage function and gate sees for one item. */
export interface StageInput<Item = JsonObject> {
  /** The stable id taken from the source's key column. */
  itemId: string;
  item: Item;
  /** Outputs of the upstream stages this stage reads, by stage id. */
  outputs: Record<string, any>;
}

/** A gate: an item for which it returns false is `gated_out` for this stage and everything after. */
export type Gate<Item = JsonObject> = (input: StageInput<Item>) => boolean;

interface StageBase<Item> {
  id: string;
  kind: StageKind;
  /** Bump when the code behind a deterministic stage changes; part of the stage version. */
  codeVersion?: string;
  when?: Gate<Item>;
  /**
   * Upstream stages whose outputs this stage reads (and whose outputs enter its
   * input hash). Defaults to every upstream stage.
   */
  reads?: string[];
  description?: string;
}

/** A deterministic stage: a pure function of its input. */
export interface FunctionStage<Item = JsonObject, Out = unknown> extends StageBase<Item> {
  kind: "filter" | "classify" | "extract" | "map";
  run: (input: StageInput<Item>) => Out | Promise<Out>;
}

export interface PromptTemplate {
  system?: string;
  /** `{{item.subject}}`, `{{outputs.classify.category}}`, `{{itemId}}` are filled from the input. */
  user: string;
}

export type ProviderName = "openai" | "anthropic" | "inprocess";
export type ProviderMode = "realtime" | "batch" | "auto";

export interface LlmParams {
  temperature?: number;
  maxTokens?: number;
  topP?: number;
}

/** An LLM-backed stage: prompt, model and output schema; the engine calls the provider. */
export interface LlmStage<Item = JsonObject> extends StageBase<Item> {
  kind: "classify" | "extract" | "map";
  provider?: ProviderName;
  model: string;
  prompt: PromptTemplate;
  /** JSON Schema of the model's output; sent as the structured-output schema and checked on return. */
  output: { name: string; schema: JsonSchema };
  params?: LlmParams;
  /**
   * `realtime` (default), `batch` (the provider's native batch API, half price,
   * results within 24 h) or `auto`: batch when enough items need a call and
   * `deadlineMinutes` (if set) leaves room for the 24 h batch window.
   */
  mode?: ProviderMode;
  deadlineMinutes?: number;
  /** Optional business rule over the parsed output: return a message to reject it (a quality failure). */
  check?: (output: any, input: StageInput<Item>) => string | undefined;
}

export type ValidationVerdict =
  | { status: "valid" }
  | { status: "review"; reasons: string[] }
  | { status: "invalid"; reasons: string[] };

export interface ValidateStage<Item = JsonObject> extends StageBase<Item> {
  kind: "validate";
  /** Schema and business rules over upstream outputs: valid, doubtful (review queue) or invalid. */
  run: (input: StageInput<Item>) => ValidationVerdict | Promise<ValidationVerdict>;
}

export interface CommitStage<Item = JsonObject> extends StageBase<Item> {
  kind: "commit";
  /**
   * Target table (`table`, or `schema.table`), created if absent and upserted
   * idempotently by `key`. With `columns` (a JSON Schema of the row), each
   * property is a typed column (migrated as properties are added) and every
   * row is checked against it; without, the row is kept as `data jsonb`.
   */
  target: { table: string; key: string; columns?: JsonSchema };
  /**
   * A random audit: this share (0..1) of the items that would be committed
   * is sent to review first (`reason: audit sample`), the same items for the
   * same stage version, so people check what the validator passed.
   */
  audit?: { sample: number };
  /** The row to upsert for this item. Its `key` field must be present. */
  row: (input: StageInput<Item>) => JsonObject;
}

export type StageDef<Item = any> =
  | FunctionStage<Item>
  | LlmStage<Item>
  | ValidateStage<Item>
  | CommitStage<Item>;

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
  stages: StageDef<Item>[];
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

export function isLlmStage(stage: StageDef): stage is LlmStage {
  return "prompt" in stage && "model" in stage;
}
