import type { PipelineDef, StageDef } from "../core/types.ts";
import type { Provider, Usage } from "../providers/types.ts";
import type { Database } from "../store/database.ts";
import type { AnswerJournal } from "./journal.ts";
import type { BudgetGate } from "./budget.ts";
import type { StageRef } from "../store/work.ts";
import { DEFAULT_LEASE_MS } from "../store/workers.ts";

/** Providers by name (`openai`, `anthropic`, `inprocess`), resolved per LLM stage. */
export interface ProviderSet {
  get(name: string): Provider;
  /** Price of one call; 0 when the model has no price row. */
  cost(model: string, usage: Usage, mode: "realtime" | "batch"): number;
  /** The provider a stage without an explicit `provider` uses. */
  defaultProvider: string;
  /**
   * Who really answers for a provider name: `openai` (the API), `openai@simulator`,
   * `openai@<base URL>`. It is part of LLM stages' input hash and of request
   * hashes, so answers from a simulator are never reused as real ones.
   * Defaults to the name itself.
   */
  endpointOf?(name: string): string;
}

export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, debug() {} };

export interface EngineOptions {
  /** Items claimed per chunk. */
  chunkSize: number;
  /** Provider calls in flight at once, per stage. */
  concurrency: number;
  /** Attempts per item for transient failures, the first included. */
  maxAttempts: number;
  /** Base delay of the exponential backoff, in ms. */
  backoffBaseMs: number;
  /** Longest single backoff, in ms. */
  backoffMaxMs: number;
  /** A worker whose heartbeat is older than this has its claims taken over. */
  leaseMs: number;
  /** First interval between polls of a provider batch; it grows to `batchPollMaxMs`. */
  batchPollMs: number;
  batchPollMaxMs: number;
  /**
   * Submit provider batches and return without waiting for them: their items
   * stay with the batch, and `collectBatches` polls and collects them later
   * (a Trigger.dev task run does so between checkpointed waits). Default
   * false: the chunk polls until its batches are collected.
   */
  deferBatchCollection?: boolean;
  /**
   * How long a provider may fail every call (its circuit open: nothing sent,
   * one probe now and then) before the stage stops, its items queued, and the
   * run ends `failed` saying why, for `resume` once the provider is back.
   */
  outageLimitMs: number;
  /** Items claimed at once by a stage in batch mode (packed into provider-sized batches). */
  batchChunkSize: number;
  /** In `auto` mode, a stage uses the batch API when at least this many items need a model call. */
  autoBatchMinItems: number;
  /**
   * Where answers are journaled the moment they arrive (see `journal.ts`), so
   * a killed process loses none it had received. Unset: no journal.
   */
  journalDir?: string;
}

export const DEFAULT_OPTIONS: EngineOptions = {
  chunkSize: 500,
  concurrency: 16,
  maxAttempts: 5,
  backoffBaseMs: 250,
  backoffMaxMs: 30_000,
  leaseMs: DEFAULT_LEASE_MS,
  batchPollMs: 2_000,
  batchPollMaxMs: 60_000,
  outageLimitMs: 10 * 60_000,
  batchChunkSize: 10_000,
  autoBatchMinItems: 200,
};

export interface StagePlan {
  index: number;
  id: string;
  kind: StageDef["kind"];
  version: string;
  /** Upstream stage indexes whose outputs this stage reads. */
  reads: number[];
}

/** Everything a piece of the engine needs to work on one run. */
export interface RunContext {
  db: Database;
  pipeline: PipelineDef;
  providers: ProviderSet;
  runId: string;
  workerId: string;
  plan: StagePlan[];
  options: EngineOptions;
  logger: Logger;
  signal?: AbortSignal;
  /**
   * Set while a chunk is claimed by row locks inside one open transaction
   * (`db` is that transaction) instead of by `claimed_by`: writes then need no
   * ownership check, since nobody else can hold those rows until it commits.
   */
  lockedClaim?: boolean;
  /**
   * Set when no other process can work on this run (embedded PGlite, which
   * one process opens at a time): claims are kept in this process's memory,
   * not written, and writes need no ownership check.
   */
  soleWorker?: boolean;
  /** Answers are appended here as they arrive, before they are written in groups. */
  journal?: Pick<AnswerJournal, "record" | "recordRaw" | "sending" | "ended">;
  /** Set when a budget applies to the run: every call reserves what it may cost here first (see `budget.ts`). */
  budget?: BudgetGate;
  /** When the run started, and its deadline (`--deadline`), if any: `auto` stages decide their mode by them (see `deadline.ts`). */
  runStartedAt?: Date;
  deadlineAt?: Date;
}

/** A stage of the context's run, as the store names it. */
export function stageRef(ctx: RunContext, stage: StagePlan): StageRef {
  return { runId: ctx.runId, stageIndex: stage.index };
}
