/**
 * A few error classes whose type decides what the engine does next: transient
 * failures are retried after a pause, deterministic ones are not, quality ones
 * get a repair attempt (see the classes below). Each carries the stage and
 * item it happened on and the original cause.
 */
export type FailureClass = "transient" | "deterministic" | "quality";

/**
 * An error's message on one line: its first line, and when that only
 * introduces what follows (it ends with a colon, as a TypeScript transform
 * failure's "Transform failed with 1 error:"), the line that says where and
 * what.
 */
export function oneLine(message: string): string {
  const lines = message.split("\n").map((l) => l.trim()).filter(Boolean);
  const first = lines[0] ?? "";
  return first.endsWith(":") && lines[1] ? `${first} ${lines[1]}` : first;
}

/**
 * Why a user's module (a pipeline, `sluice.config.ts`) did not load, on one
 * line, with what to do where Node's own words do not say it.
 */
export function loadFailure(err: unknown): string {
  const line = oneLine(err instanceof Error ? err.message : String(err));
  // A .ts file with no package.json of "type": "module" above it is loaded as CommonJS, and its `export default` fails so.
  if (/^Cannot require\(\) ES Module .* in a cycle/.test(line)) return `it was loaded as CommonJS (no package.json with "type": "module" above it): name it .mts, or add one`;
  return line;
}

export interface ErrorContext {
  stageId?: string;
  itemId?: string;
  cause?: unknown;
}

export class SluiceError extends Error {
  override name = "SluiceError";
  stageId?: string;
  itemId?: string;
  constructor(message: string, ctx: ErrorContext = {}) {
    super(message, ctx.cause === undefined ? undefined : { cause: ctx.cause });
    this.stageId = ctx.stageId;
    this.itemId = ctx.itemId;
  }
}

/**
 * This worker stopped taking part in a run it shares with others (it went a
 * lease without a heartbeat, so they may have taken its items over). The run
 * itself is fine and goes on without it.
 */
export class WorkerStoppedError extends SluiceError {
  override name = "WorkerStoppedError";
}

/** Worth retrying after a pause: 429, 5xx, 529, timeouts, resets. */
export class TransientError extends SluiceError {
  override name = "TransientError";
  readonly failureClass = "transient" as const;
  /** Milliseconds the provider asked us to wait (`retry-after`), if it said. */
  retryAfterMs?: number;
  status?: number;
  /** True when the request never left sluice (the circuit was open): nothing was sent or paid. */
  notSent?: boolean;
  /** With the circuit open: how long the provider has failed every call (since the circuit first opened, no call succeeding). */
  outageMs?: number;
  constructor(message: string, ctx: ErrorContext & { retryAfterMs?: number; status?: number; notSent?: boolean; outageMs?: number } = {}) {
    super(message, ctx);
    this.retryAfterMs = ctx.retryAfterMs;
    this.status = ctx.status;
    this.notSent = ctx.notSent;
    this.outageMs = ctx.outageMs;
  }
}

/** Retrying will not help: invalid request, policy, context too long, auth. */
export class DeterministicError extends SluiceError {
  override name = "DeterministicError";
  readonly failureClass = "deterministic" as const;
  status?: number;
  /**
   * The failure is about the stage, not the item: a revoked key, a model the
   * provider does not know, no quota left. Every item would fail alike, so
   * the engine stops the stage instead of dead-lettering each item.
   */
  stageWide?: boolean;
  constructor(message: string, ctx: ErrorContext & { status?: number; stageWide?: boolean } = {}) {
    super(message, ctx);
    this.status = ctx.status;
    this.stageWide = ctx.stageWide;
  }
}

/**
 * A stage stopped making calls because of a stage-wide failure (see
 * `DeterministicError.stageWide`). Its items stay queued, not dead-lettered;
 * the run ends `failed` with this message, and `resume` goes on once the
 * cause (a key, a model name, a quota) is fixed.
 */
export class StageHaltedError extends SluiceError {
  override name = "StageHaltedError";
}

/**
 * A run reached a budget (its own, or its pipeline's for the day): every call
 * not yet sent is stopped, as for a stage-wide failure, and its items stay
 * queued. The run ends `budget_exhausted` with what it spent; `resume` with a
 * larger budget (or on another day) goes on.
 */
export class BudgetExhaustedError extends StageHaltedError {
  override name = "BudgetExhaustedError";
  /** The budget that refused (`run:<id>` or `day:<pipeline>:<date>`), its cap and what was spent of it. */
  readonly budget: { key: string; capUsd: number; spentUsd: number };
  constructor(message: string, budget: { key: string; capUsd: number; spentUsd: number }, ctx: ErrorContext = {}) {
    super(message, ctx);
    this.budget = budget;
  }
}

/** The provider answered, but the answer is unusable: bad JSON, truncated, refused, rule broken. */
export class QualityError extends SluiceError {
  override name = "QualityError";
  readonly failureClass = "quality" as const;
  /** The raw text the model returned, shown to it in the repair attempt. */
  rawOutput?: string;
  constructor(message: string, ctx: ErrorContext & { rawOutput?: string } = {}) {
    super(message, ctx);
    this.rawOutput = ctx.rawOutput;
  }
}

/** The pipeline definition itself is wrong; reported before any work starts. */
export class DefinitionError extends SluiceError {
  override name = "DefinitionError";
}

/** Classify anything thrown by a stage. Unknown errors from user code are deterministic: retrying code will not fix it. */
export function failureClassOf(err: unknown): FailureClass {
  if (err instanceof TransientError) return "transient";
  if (err instanceof QualityError) return "quality";
  return "deterministic";
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
