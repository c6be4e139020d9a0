import {
  bigint,
  bigserial,
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";
import { sql } from "drizzle-orm";

/**
 * The store. `work` is the durable queue (one row per run, stage and item);
 * `stage_outputs` holds the versioned intermediate outputs that any later run
 * reuses by `(stage version, input hash)`.
 */

export const runs = pgTable("runs", {
  id: text("id").primaryKey(),
  pipeline: text("pipeline").notNull(),
  /** running | finished | failed | budget_exhausted */
  status: text("status").notNull(),
  inputPath: text("input_path"),
  inputFingerprint: text("input_fingerprint"),
  /** `[{ id, kind, version, parts }]` in pipeline order: the plan this run executes. */
  stages: jsonb("stages").notNull(),
  /** `rerun` base run, stage selection and the like. */
  options: jsonb("options").notNull().default({}),
  /** Set once every source row has been read and recorded. */
  loadedAt: timestamp("loaded_at", { withTimezone: true }),
  rowsRead: integer("rows_read").notNull().default(0),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  finishedAt: timestamp("finished_at", { withTimezone: true }),
  error: text("error"),
});

export const runItems = pgTable(
  "run_items",
  {
    runId: text("run_id").notNull(),
    itemId: text("item_id").notNull(),
    line: integer("line").notNull(),
    contentHash: text("content_hash").notNull(),
    data: jsonb("data").notNull(),
  },
  (t) => [primaryKey({ columns: [t.runId, t.itemId] })],
);

/** Source rows that did not become items: bad input (quarantined) and identical duplicates (deduplicated). */
export const rejectedRows = pgTable(
  "rejected_rows",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    runId: text("run_id").notNull(),
    line: integer("line").notNull(),
    itemId: text("item_id"),
    /** quarantined | deduplicated */
    state: text("state").notNull(),
    reason: text("reason").notNull(),
    raw: text("raw"),
  },
  (t) => [uniqueIndex("rejected_rows_run_line").on(t.runId, t.line)],
);

export const work = pgTable(
  "work",
  {
    runId: text("run_id").notNull(),
    stageIndex: integer("stage_index").notNull(),
    itemId: text("item_id").notNull(),
    stageId: text("stage_id").notNull(),
    status: text("status").notNull(),
    inputHash: text("input_hash"),
    outputId: bigint("output_id", { mode: "number" }),
    /** True when the output came from an earlier computation (reuse rule or request cache). */
    reused: boolean("reused").notNull().default(false),
    attempts: integer("attempts").notNull().default(0),
    errorClass: text("error_class"),
    errorMessage: text("error_message"),
    claimedBy: text("claimed_by"),
    notBefore: timestamp("not_before", { withTimezone: true }),
    /** The review decision that settled an item the stage sent to review (`review_decisions.id`). */
    reviewId: bigint("review_id", { mode: "number" }),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.runId, t.stageIndex, t.itemId] }),
    // Claims read claimable items in id order: this index serves them without
    // a sort, and holds only claimable rows, so a finished row costs it nothing.
    index("work_claimable").on(t.runId, t.stageIndex, t.itemId).where(sql`${t.status} IN ('queued', 'failed_retryable')`),
    // The review decisions in force for a chunk's items (`reviews.ts` `editsInForce`), found
    // by item across stages: the primary key, stage first, cannot find an item without its
    // stage, and a scan of the run's rows per chunk made a run's time grow with the square of
    // its items. Only rows a review settled are in it, so writing any other row costs it nothing.
    index("work_reviewed").on(t.runId, t.itemId).where(sql`${t.reviewId} IS NOT NULL`),
  ],
);

export const stageOutputs = pgTable(
  "stage_outputs",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    pipeline: text("pipeline").notNull(),
    stageId: text("stage_id").notNull(),
    stageVersion: text("stage_version").notNull(),
    itemId: text("item_id").notNull(),
    inputHash: text("input_hash").notNull(),
    /** The status the output puts the item in: succeeded_unvalidated, validated, needs_review, failed_terminal, gated... */
    status: text("status").notNull(),
    output: jsonb("output"),
    /** Hash of `output`, so downstream change detection is one comparison. */
    outputHash: text("output_hash").notNull(),
    costUsd: doublePrecision("cost_usd").notNull().default(0),
    runId: text("run_id").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex("stage_outputs_key").on(t.pipeline, t.stageId, t.stageVersion, t.itemId, t.inputHash)],
);

/** One row per provider request (or deterministic failure): tokens, cost, latency, error class. */
export const attempts = pgTable(
  "attempts",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    /** A run's id, or for calls made outside a run (`sluice compare`) an id of their own (`cmp_...`). */
    runId: text("run_id").notNull(),
    /** Set for calls made outside a run, whose run id names no row in `runs`; a run's calls take the run's pipeline. */
    pipeline: text("pipeline"),
    stageId: text("stage_id").notNull(),
    itemId: text("item_id").notNull(),
    attempt: integer("attempt").notNull(),
    provider: text("provider"),
    model: text("model"),
    /** realtime | batch */
    mode: text("mode"),
    requestHash: text("request_hash"),
    inputTokens: integer("input_tokens").notNull().default(0),
    outputTokens: integer("output_tokens").notNull().default(0),
    cachedTokens: integer("cached_tokens").notNull().default(0),
    costUsd: doublePrecision("cost_usd").notNull().default(0),
    /** What the call would have cost at the realtime list price: the batch discount is the difference. */
    listCostUsd: doublePrecision("list_cost_usd").notNull().default(0),
    latencyMs: integer("latency_ms").notNull().default(0),
    errorClass: text("error_class"),
    errorMessage: text("error_message"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("attempts_run_stage").on(t.runId, t.stageId)],
);

/** Identical provider requests are answered from here at zero cost. */
export const requestCache = pgTable("request_cache", {
  requestHash: text("request_hash").primaryKey(),
  provider: text("provider").notNull(),
  model: text("model").notNull(),
  response: jsonb("response").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * Requests a worker is paying for right now, by request hash: another process
 * that needs the same request waits for its answer (it lands in
 * `request_cache`) instead of paying again, and takes the claim over if the
 * worker's heartbeat lapses.
 */
export const requestClaims = pgTable("request_claims", {
  requestHash: text("request_hash").primaryKey(),
  workerId: text("worker_id").notNull(),
  claimedAt: timestamp("claimed_at", { withTimezone: true }).notNull().defaultNow(),
});

/** Provider batch jobs, persisted before polling so a crashed process resumes polling instead of resubmitting. */
export const providerBatches = pgTable(
  "provider_batches",
  {
    /**
     * The batch's key here: the provider's batch id and the endpoint that gave
     * it (`batch_abc@openai`), since ids are unique per provider account only.
     */
    id: text("id").primaryKey(),
    runId: text("run_id").notNull(),
    stageIndex: integer("stage_index").notNull(),
    provider: text("provider").notNull(),
    /** The provider's own batch id, for its API (null on rows recorded before endpoints were part of the key: `id` then). */
    batchId: text("batch_id"),
    /** submitted | ended | collected | expired | cancelled | failed */
    status: text("status").notNull(),
    /** `{ customId: { itemId, inputHash, requestHash, request } }` of batches recorded before `provider_batch_requests`; `{}` since. */
    requests: jsonb("requests").notNull(),
    /** The worker polling it; another takes over when this one's heartbeat goes stale. */
    workerId: text("worker_id"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    /** When a poll first found it no longer in progress (ended, expired, cancelled, failed): `ended_at - created_at` is its turnaround. */
    endedAt: timestamp("ended_at", { withTimezone: true }),
  },
  (t) => [index("provider_batches_run").on(t.runId, t.stageIndex)],
);

/**
 * A provider batch's requests, one row each: `{ itemId, inputHash, requestHash, request }`
 * by custom id. Written a few hundred at a time with the batch's row, so a batch of
 * tens of thousands of requests is never one JSON value (embedded PGlite's memory,
 * once grown to parse one, never shrinks). Rows recorded before this table keep
 * theirs in `provider_batches.requests`.
 */
export const providerBatchRequests = pgTable(
  "provider_batch_requests",
  {
    batchRowId: text("batch_row_id").notNull().references(() => providerBatches.id, { onDelete: "cascade" }),
    customId: text("custom_id").notNull(),
    entry: jsonb("entry").notNull(),
  },
  (t) => [primaryKey({ columns: [t.batchRowId, t.customId] })],
);

/** Live runner processes; a claim held by a worker whose heartbeat went stale is taken over. */
export const workers = pgTable("workers", {
  id: text("id").primaryKey(),
  runId: text("run_id").notNull(),
  pid: integer("pid").notNull(),
  host: text("host").notNull(),
  heartbeatAt: timestamp("heartbeat_at", { withTimezone: true }).notNull().defaultNow(),
  /** The stage index of the segment whose chunks the worker is carrying, if any (see src/engine/drive/barrier.ts). */
  segment: integer("segment"),
});

/**
 * A person's decision on an item a stage sent to review: a human output
 * layered over the stage's, keyed like it (stage version and input hash), so
 * it holds for every run where what was reviewed is unchanged and is asked
 * again where it changed. The latest decision for a key is the one in force.
 */
export const reviewDecisions = pgTable(
  "review_decisions",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    pipeline: text("pipeline").notNull(),
    stageId: text("stage_id").notNull(),
    stageVersion: text("stage_version").notNull(),
    itemId: text("item_id").notNull(),
    inputHash: text("input_hash").notNull(),
    /** approve | reject | edit */
    decision: text("decision").notNull(),
    /** For `edit`: fields of the committed row set by the reviewer. */
    edits: jsonb("edits"),
    reviewer: text("reviewer").notNull(),
    note: text("note"),
    /** The run the item was reviewed in. */
    runId: text("run_id"),
    decidedAt: timestamp("decided_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("review_decisions_key").on(t.pipeline, t.stageId, t.itemId, t.inputHash)],
);

/**
 * Every write to a commit target: the run, the key, the operation and the
 * whole row before and after (`null` where there was none). `revert` reads it
 * backwards; `history` reads one key's.
 */
export const targetLedger = pgTable(
  "target_ledger",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    runId: text("run_id").notNull(),
    /** The target table. */
    target: text("target").notNull(),
    key: text("key").notNull(),
    /** insert | update | withdraw | revert */
    op: text("op").notNull(),
    before: jsonb("before"),
    after: jsonb("after"),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("target_ledger_run").on(t.runId), index("target_ledger_key").on(t.target, t.key)],
);

/**
 * Spending caps, one row per budget key: `run:<run id>` (a run's `--budget`,
 * or its pipeline's `budget.perRun`) and `day:<pipeline>:<YYYY-MM-DD>` (the
 * pipeline's `budget.perDay`, UTC days). `reserved` is what calls in flight
 * may still cost; `spent`, what settled calls did cost. A call is sent only
 * once `spent + reserved` with its own reservation fits under `cap` for every
 * key it counts against (see `budgets.ts`).
 */
export const budgets = pgTable("budgets", {
  key: text("key").primaryKey(),
  capUsd: doublePrecision("cap_usd").notNull(),
  spentUsd: doublePrecision("spent_usd").notNull().default(0),
  reservedUsd: doublePrecision("reserved_usd").notNull().default(0),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * Who holds each part of `budgets.reserved_usd`: a worker (its realtime calls
 * in flight; released when its heartbeat lapses) or a provider batch
 * (`batch:<id>`, the whole batch; released when the batch is collected or
 * withdrawn), per budget key.
 */
export const spendReservations = pgTable(
  "spend_reservations",
  {
    holder: text("holder").notNull(),
    budgetKey: text("budget_key").notNull(),
    runId: text("run_id").notNull(),
    amountUsd: doublePrecision("amount_usd").notNull().default(0),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.holder, t.budgetKey] }), index("spend_reservations_key").on(t.budgetKey)],
);

/**
 * How far each pipeline has read its table or query source: the cursor
 * column's value (as text, cast back to the column's type when compared) of
 * the last row its last finished run read. A run reads only rows past it.
 */
export const sourceCursors = pgTable(
  "source_cursors",
  {
    pipeline: text("pipeline").notNull(),
    /** `table:<name>` or `query:<hash>`: a changed query starts from the beginning. */
    source: text("source").notNull(),
    cursor: text("cursor").notNull(),
    /** md5 of each row at exactly `cursor` that was read (`SourceCursor.seen`): a row arriving later at that value is read. */
    seen: jsonb("seen").$type<string[]>().notNull().default([]),
    /** The run that read up to `cursor`. */
    runId: text("run_id").notNull(),
    rowsRead: integer("rows_read").notNull(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.pipeline, t.source] })],
);

/**
 * Files of a glob source a pipeline has read, by content: a file is read
 * again only if its bytes change (a new fingerprint).
 */
export const sourceFiles = pgTable(
  "source_files",
  {
    pipeline: text("pipeline").notNull(),
    path: text("path").notNull(),
    /** sha256 of the file's bytes. */
    fingerprint: text("fingerprint").notNull(),
    runId: text("run_id").notNull(),
    readAt: timestamp("read_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.pipeline, t.path, t.fingerprint] })],
);
