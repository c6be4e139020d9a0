import { BudgetExhaustedError } from "../core/errors.ts";
import type { PipelineDef } from "../core/types.ts";
import { estimateInputTokens, OutputEstimate } from "../providers/limits/estimate.ts";
import type { CompletionRequest } from "../providers/types.ts";
import { adjustSpend, budgetRows, dayBudgetKey, releaseHolder, releaseStaleReservations, runBudgetKey, setBudgetCaps, type BudgetRow, type Reservation } from "../store/budgets.ts";
import type { Database } from "../store/database.ts";
import type { Logger, ProviderSet } from "./context.ts";

/**
 * Budgets on the call path. Before a request is sent, what it may cost is
 * reserved in the store (`store/budgets.ts`) against every budget the run
 * counts against (its own, its pipeline's for the day); after, the
 * reservation is settled with what the call did cost. Other processes and
 * Trigger.dev task runs of the run reserve against the same rows, so the cap
 * holds with calls in flight anywhere.
 *
 * A reservation costs no round trip of its own: the asks of calls waiting
 * for a slot at the same moment go in one statement, with the settlements of
 * the calls that ended since, and an allowance reserved ahead serves the
 * next asks without one (see ALLOWANCE_STEPS). An ask that does not fit waits while this
 * process has calls in flight (they may cost less than they reserved); when
 * none are left and it still does not fit, the budget is exhausted: every
 * call not yet sent, in every stage, stops with `BudgetExhaustedError`.
 *
 * What a call may cost is priced from the request's input tokens (counted
 * with the tokenizer the provider layer uses, plus a margin) and its output
 * cap (`maxTokens`); a stage without one is reserved a running estimate of
 * its answers, so the cap holds strictly only where `maxTokens` is set.
 */

/** Input tokens counted here against what a provider may bill: tokenizers differ by a few percent. */
const INPUT_MARGIN = 1.1;
/** Output tokens reserved for a model without `maxTokens` until answers are seen. */
const OUTPUT_GUESS = 1024;
/**
 * A statement also reserves an allowance ahead of the asks in it: up to
 * ALLOWANCE_STEPS steps, each ALLOWANCE_ASKS times the largest ask but at
 * most ALLOWANCE_SHARE of the room the budget had left, granted while they
 * fit. Later asks take from it without a statement; it goes back to the
 * store with the next one. So a budget far from its cap costs a statement per
 * few dozen calls, and close to it (where another process may need what is
 * left) hardly any is held ahead.
 */
const ALLOWANCE_STEPS = 4;
const ALLOWANCE_ASKS = 64;
const ALLOWANCE_SHARE = 0.025;
/**
 * Calls drawing on an allowance end without a statement, so what they cost
 * waits in memory for the next one. It goes out at most this long after a
 * call settles, with the allowance kept: a process killed meanwhile takes at
 * most this much of its calls' cost with it (its reservations are released
 * as stale, and what its calls still out reserved is counted from its
 * journal, `engine/journal.ts`). Before, a demo killed in classify had
 * settled $0.0536 of calls of which the budget had $0.0146.
 */
export const SETTLE_EVERY_MS = 1000;

/** A call's reservation, as `reserve` grants it and `settle` ends it. */
export type Hold = Reservation;

interface Ask {
  amountUsd: number;
  resolve: (hold: Hold) => void;
  reject: (err: unknown) => void;
}

export interface BudgetGateOptions {
  db: Database;
  pipelineId: string;
  runId: string;
  /** Who holds the reservations of realtime calls: the worker. */
  holder: string;
  /** The run's budget key, when the run has a cap. */
  runKey?: string;
  perDayUsd?: number;
  leaseMs: number;
  providers: ProviderSet;
  logger: Logger;
}

export class BudgetGate {
  readonly runId: string;
  /** Set once a budget refused with nothing of this process in flight: every later ask is refused at once. */
  exhausted?: BudgetExhaustedError;
  private readonly o: BudgetGateOptions;
  private pending: Ask[] = [];
  /** Asks refused while calls of this process were in flight: asked again after the next settlement. */
  private deferred: Ask[] = [];
  private settlements = new Map<string, { releaseUsd: number; spendUsd: number }>();
  private inFlight = 0;
  private sending: Promise<void> | undefined;
  private settleTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  private day: string | undefined;
  /** Stale reservations were released since the last grant: a refusal now is final. */
  private releasedStale = false;
  private readonly outputs = new Map<string, OutputEstimate>();
  /** Reserved in the store ahead of asks (under `allowanceKeys`), granted here without a statement. */
  private allowance = 0;
  private allowanceKeys: readonly string[] = [];
  /** Room under the tightest budget after the last statement. */
  private room = Infinity;
  /** The largest ask so far: stages' calls differ in price, and the allowance should serve any of them. */
  private largestAsk = 0;

  constructor(options: BudgetGateOptions) {
    this.o = options;
    this.runId = options.runId;
  }

  /** What a request may cost, for a reservation: input tokens with a margin, output up to its cap. */
  estimateUsd(request: CompletionRequest, mode: "realtime" | "batch"): number {
    const inputTokens = Math.ceil(estimateInputTokens(request) * INPUT_MARGIN);
    const cap = request.params?.maxTokens;
    const outputTokens = cap ?? this.outputsOf(request.model).reserve(undefined);
    return this.o.providers.cost(request.model, { inputTokens, outputTokens }, mode);
  }

  /** Reserve what one realtime call may cost; refused with `BudgetExhaustedError` once nothing more fits. */
  reserve(amountUsd: number): Promise<Hold> {
    if (this.exhausted) return Promise.reject(this.exhausted);
    if (this.pending.length === 0 && amountUsd <= this.allowance) {
      this.allowance -= amountUsd;
      this.inFlight++;
      return Promise.resolve({ keys: this.allowanceKeys, amountUsd });
    }
    return new Promise<Hold>((resolve, reject) => {
      this.pending.push({ amountUsd, resolve, reject });
      this.pump();
    });
  }

  /** A reserved call ended: it cost `costUsd` (0 when it failed). Settled with the next statement. */
  settle(hold: Hold, costUsd: number, model?: string, outputTokens?: number): void {
    if (model !== undefined && outputTokens !== undefined) this.outputsOf(model).observe(outputTokens);
    this.inFlight--;
    for (const key of hold.keys) this.addSettlement(key, hold.amountUsd, costUsd);
    if (this.deferred.length) {
      this.pending.push(...this.deferred.splice(0));
      this.pump();
    }
    this.settleSoon();
  }

  /** Settlements go out within SETTLE_EVERY_MS, in a statement of their own if no other comes first. */
  private settleSoon(): void {
    if (this.settleTimer) return;
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      if (this.settlements.size === 0 || this.closed) return;
      // A statement on its way took what was settled before it; what came after waits for the next.
      if (this.sending || this.pending.length) return this.settleSoon();
      this.sending = this.send([], { keepAllowance: true }).finally(() => this.sent());
    }, SETTLE_EVERY_MS);
    this.settleTimer.unref?.();
  }

  /**
   * Reserve a provider batch's requests under the batch's own holder: as
   * many as fit, in order (the batch is cut to those). Returns how many.
   * Nothing fitting exhausts the budget for this process; so does fitting
   * fewer than all with `wholeOrStop` (a caller that cannot send the rest
   * once this batch is settled).
   */
  async reserveBatch(holder: string, amountsUsd: readonly number[], { wholeOrStop = false } = {}): Promise<number> {
    if (this.exhausted) return 0;
    await this.flush();
    const keys = await this.keys();
    const ask = (from: number) => adjustSpend(this.o.db, { holder, runId: this.runId, ask: { keys, amounts: amountsUsd.slice(from) } });
    let { granted, budgets } = await ask(0);
    // What a dead process still held may be what is missing.
    if (granted < amountsUsd.length && (await this.releaseStale())) {
      const more = await ask(granted);
      granted += more.granted;
      budgets = more.budgets;
    }
    if (granted === 0 || (wholeOrStop && granted < amountsUsd.length)) this.exhausted ??= this.exhaustion(budgets, keys);
    return granted;
  }

  /** Send the settlements not sent yet, and give the allowance back. */
  async flush(): Promise<void> {
    while (this.sending) await this.sending;
    if (this.settlements.size === 0 && this.allowance === 0) return;
    await this.send([]);
  }

  /** Settle what is left and give up this holder's rows (the process stops working on the run). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
    await this.flush();
    if (this.inFlight === 0) await releaseHolder(this.o.db, this.o.holder);
  }

  /** The budgets a call counts against now: the run's, and the pipeline's for today (UTC), recorded on first use. */
  private async keys(): Promise<string[]> {
    const keys = this.o.runKey ? [this.o.runKey] : [];
    if (this.o.perDayUsd !== undefined) {
      const day = new Date().toISOString().slice(0, 10);
      const key = dayBudgetKey(this.o.pipelineId, day);
      if (this.day !== day) {
        await setBudgetCaps(this.o.db, [{ key, capUsd: this.o.perDayUsd }]);
        this.day = day;
      }
      keys.push(key);
    }
    return keys;
  }

  private pump(): void {
    if (this.sending || this.pending.length === 0) return;
    const asks = this.pending.splice(0);
    this.sending = this.send(asks).finally(() => this.sent());
  }

  private sent(): void {
    this.sending = undefined;
    // Asks that came in meanwhile take from the new allowance first, rather than send it back at once.
    while (this.pending.length && this.pending[0]!.amountUsd <= this.allowance) {
      const a = this.pending.shift()!;
      this.allowance -= a.amountUsd;
      this.inFlight++;
      a.resolve({ keys: this.allowanceKeys, amountUsd: a.amountUsd });
    }
    this.pump();
  }

  private async send(asks: Ask[], { keepAllowance = false } = {}): Promise<void> {
    // The allowance left goes back with this statement (before any await: nothing more is granted from it),
    // unless the statement only settles.
    if (!keepAllowance) {
      if (this.allowance > 0) for (const key of this.allowanceKeys) this.addSettlement(key, this.allowance, 0);
      this.allowance = 0;
    }
    const settle = [...this.settlements].map(([key, s]) => ({ key, ...s }));
    this.settlements.clear();
    const ahead = this.allowanceSteps(asks);
    let granted = 0;
    let keys: string[] = [];
    let budgets: BudgetRow[] = [];
    try {
      keys = await this.keys();
      const amounts = [...asks.map((a) => a.amountUsd), ...ahead];
      ({ granted, budgets } = await adjustSpend(this.o.db, { holder: this.o.holder, runId: this.runId, settle, ask: asks.length ? { keys, amounts } : undefined }));
    } catch (err) {
      // Not written: kept for the next statement (the calls did end, and what they cost was paid).
      for (const x of settle) this.addSettlement(x.key, x.releaseUsd, x.spendUsd);
      for (const a of asks) a.reject(err);
      return;
    }
    const rooms = budgets.filter((b) => keys.includes(b.key)).map((b) => b.capUsd - b.spentUsd - b.reservedUsd);
    if (rooms.length) this.room = Math.min(...rooms);
    const extra = Math.max(0, granted - asks.length);
    granted -= extra;
    if (extra > 0) {
      this.allowance = ahead.slice(0, extra).reduce((a, b) => a + b, 0);
      this.allowanceKeys = keys;
    }
    for (const a of asks.slice(0, granted)) a.resolve({ keys, amountUsd: a.amountUsd });
    this.inFlight += granted;
    if (granted > 0) this.releasedStale = false;
    const refused = asks.slice(granted);
    if (refused.length === 0) return;
    // Calls of this process in flight may cost less than they hold: ask again once one settles.
    if (this.inFlight > 0) {
      this.deferred.push(...refused);
      return;
    }
    // Nothing of ours in flight: what a dead process still held may be what is missing.
    if (await this.releaseStale().catch(() => false)) {
      this.pending.unshift(...refused);
      return;
    }
    this.exhausted ??= this.exhaustion(budgets, keys);
    for (const a of [...refused, ...this.deferred.splice(0), ...this.pending.splice(0)]) a.reject(this.exhausted);
  }

  /** The allowance asked for after `asks` (see ALLOWANCE_STEPS). */
  private allowanceSteps(asks: readonly Ask[]): number[] {
    if (asks.length === 0) return [];
    for (const a of asks) this.largestAsk = Math.max(this.largestAsk, a.amountUsd);
    const step = Math.min(ALLOWANCE_ASKS * this.largestAsk, this.room * ALLOWANCE_SHARE);
    return step > 0 ? Array.from({ length: ALLOWANCE_STEPS }, () => step) : [];
  }

  private addSettlement(key: string, releaseUsd: number, spendUsd: number): void {
    const s = this.settlements.get(key) ?? { releaseUsd: 0, spendUsd: 0 };
    s.releaseUsd += releaseUsd;
    s.spendUsd += spendUsd;
    this.settlements.set(key, s);
  }

  /** Once per refusal: release reservations of holders that are gone. True when any was. */
  private async releaseStale(): Promise<boolean> {
    if (this.releasedStale) return false;
    this.releasedStale = true;
    return (await releaseStaleReservations(this.o.db, this.o.holder, this.o.leaseMs, this.o.db.kind === "pglite")) > 0;
  }

  private exhaustion(budgets: readonly BudgetRow[], keys: readonly string[]): BudgetExhaustedError {
    const rows = budgets.filter((b) => keys.includes(b.key));
    const tightest = rows.sort((a, b) => a.capUsd - a.spentUsd - a.reservedUsd - (b.capUsd - b.spentUsd - b.reservedUsd))[0] ?? { key: keys[0] ?? "", capUsd: 0, spentUsd: 0, reservedUsd: 0 };
    return new BudgetExhaustedError(budgetStopReason(this.runId, this.o.pipelineId, tightest), { key: tightest.key, capUsd: tightest.capUsd, spentUsd: tightest.spentUsd });
  }

  private outputsOf(model: string): OutputEstimate {
    let e = this.outputs.get(model);
    if (!e) this.outputs.set(model, (e = new OutputEstimate(OUTPUT_GUESS)));
    return e;
  }
}

/** Why a run stopped at a budget, with what was spent of it (read once the run's calls have settled). */
export function budgetStopReason(runId: string, pipelineId: string, budget: { key: string; capUsd: number; spentUsd: number }): string {
  const spent = `$${budget.spentUsd.toFixed(4)} of $${budget.capUsd.toFixed(4)}`;
  return budget.key.startsWith("day:")
    ? `run ${runId} stopped at pipeline ${pipelineId}'s budget for ${budget.key.slice(budget.key.lastIndexOf(":") + 1)} (UTC): ${spent} spent; its items stay queued for \`sluice resume ${runId}\` tomorrow, or raise budget.perDay`
    : `run ${runId} stopped at its budget: ${spent} spent; its items stay queued: \`sluice resume ${runId} --budget <usd>\` with a larger budget goes on`;
}

/**
 * Record the run's cap and build its gate: `budgetUsd` (a `--budget`) replaces
 * the run's cap; else the pipeline's `perRun` is its cap unless one was
 * recorded before. No gate when no budget applies: calls then cost no
 * reservation at all.
 */
export async function openBudget(o: Omit<BudgetGateOptions, "runKey" | "perDayUsd"> & { pipeline: PipelineDef; budgetUsd?: number }): Promise<BudgetGate | undefined> {
  const runKey = runBudgetKey(o.runId);
  if (o.budgetUsd !== undefined) await setBudgetCaps(o.db, [{ key: runKey, capUsd: o.budgetUsd }]);
  else if (o.pipeline.budget?.perRun !== undefined) await setBudgetCaps(o.db, [{ key: runKey, capUsd: o.pipeline.budget.perRun }], { overwrite: false });
  const [run] = await budgetRows(o.db, [runKey]);
  const perDayUsd = o.pipeline.budget?.perDay;
  if (!run && perDayUsd === undefined) return undefined;
  return new BudgetGate({ ...o, runKey: run ? runKey : undefined, perDayUsd });
}
