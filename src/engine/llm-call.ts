import { DeterministicError, QualityError, StageHaltedError, TransientError, errorMessage, failureClassOf, type FailureClass } from "../core/errors.ts";
import { fmtMs } from "../core/duration.ts";
import { hashValue, sha256, stableStringify } from "../core/hash.ts";
import { byDefinition } from "../core/definition-cache.ts";
import { compileSchema } from "../core/schema.ts";
import { renderTemplate } from "../core/template.ts";
import type { LlmStage, StageInput } from "../core/types.ts";
import type { CompletionRequest, CompletionResult, Provider } from "../providers/types.ts";
import type { AttemptRow } from "../store/results.ts";
import type { Logger, RunContext, StagePlan } from "./context.ts";
import { backoffMs, sleep } from "./retry.ts";
import { withAnswerTap, type AnswerTap } from "../providers/transport.ts";
import type { Hold } from "./budget.ts";

/** One provider request as recorded in `attempts` (see `AttemptRow`), its failure sorted into a class. */
export type AttemptRecord = AttemptRow & { errorClass?: FailureClass };

export type LlmOutcome =
  /** `journaled`: the answer was journaled by the transport as it arrived (see `journal.ts`). */
  | { status: "succeeded"; value: unknown; attempts: AttemptRecord[]; response: CompletionResult; journaled?: boolean }
  | { status: "needs_review" | "failed_terminal"; errorClass: FailureClass; message: string; attempts: AttemptRecord[]; value?: unknown };

export function providerNameOf(ctx: RunContext, stage: LlmStage): string {
  return stage.provider ?? ctx.providers.defaultProvider;
}

/** Who really answers for a provider name (see `ProviderSet.endpointOf`). */
export function endpointOf(ctx: RunContext, providerName: string): string {
  return ctx.providers.endpointOf?.(providerName) ?? providerName;
}

/** Batch custom ids must match `^[a-zA-Z0-9_-]{1,64}$`; item ids may not, so they are hashed. */
export function customIdFor(stage: StagePlan, itemId: string): string {
  const safe = /^[a-zA-Z0-9_-]{1,40}$/.test(itemId) ? itemId : `h${hashValue(itemId, 39)}`;
  return `${stage.index}-${safe}`.slice(0, 64);
}

/** The request an LLM stage sends for one item. `customId` is derived from the item, so a batch can be reconciled. */
export function buildRequest(stage: LlmStage, input: StageInput, customId: string): CompletionRequest {
  return {
    customId,
    model: stage.model,
    system: stage.prompt.system === undefined ? undefined : renderTemplate(stage.prompt.system, input),
    messages: [{ role: "user", content: renderTemplate(stage.prompt.user, input) }],
    schema: stage.output,
    params: stage.params ?? {},
  };
}

/** Everything that affects the answer (the endpoint that answers included), and nothing else (not the custom id). */
export function requestHash(endpoint: string, request: CompletionRequest): string {
  const { customId: _customId, ...rest } = request;
  const usual = typeof request.model === "string" && Array.isArray(request.messages) && Object.keys(rest).every((k) => REQUEST_KEYS.has(k));
  if (!usual) return hashValue({ provider: endpoint, ...rest }, 32);
  // The same text hashValue hashes (keys in sorted order), built without
  // copying the stage's schema and params for every request: their text is
  // kept per object (see core/definition-cache.ts).
  const members = [`"messages":${stableStringify(request.messages)}`, `"model":${JSON.stringify(request.model)}`];
  if (request.params !== undefined) members.push(`"params":${stableText(request.params)}`);
  members.push(`"provider":${JSON.stringify(endpoint)}`);
  if (request.schema !== undefined) members.push(`"schema":${stableText(request.schema)}`);
  if (request.system !== undefined) members.push(`"system":${JSON.stringify(request.system)}`);
  return sha256(`{${members.join(",")}}`).slice(0, 32);
}

const REQUEST_KEYS = new Set(["model", "system", "messages", "schema", "params"]);
const stableTexts = new WeakMap<object, { generation: number; value: string }>();

function stableText(value: object): string {
  return byDefinition(stableTexts, value, () => stableStringify(value));
}

/** Parse and check a completion against the stage's schema and business rule. */
export type Checked = { ok: true; value: unknown } | { ok: false; error: QualityError; rule: boolean; threw?: boolean };

export function checkCompletion(stage: LlmStage, input: StageInput, result: CompletionResult): Checked {
  if (result.finishReason === "refusal" || result.finishReason === "content_filter") {
    return { ok: false, rule: false, error: new QualityError(`the model refused: ${result.refusal ?? "no reason given"}`, { rawOutput: result.text }) };
  }
  if (result.finishReason === "length") {
    return { ok: false, rule: false, error: new QualityError(`output truncated at the token limit (${result.usage.outputTokens} output tokens)`, { rawOutput: result.text }) };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(result.text);
  } catch (err) {
    return { ok: false, rule: false, error: new QualityError(`output is not valid JSON: ${errorMessage(err)}`, { rawOutput: result.text }) };
  }
  const checked = compileSchema(stage.output.schema)(parsed);
  if (!checked.ok) {
    return { ok: false, rule: false, error: new QualityError(`output does not match schema ${stage.output.name}: ${checked.errors.join("; ")}`, { rawOutput: result.text }) };
  }
  let broken: string | undefined;
  try {
    broken = stage.check?.(checked.value, input);
  } catch (err) {
    // A bug in the rule, not in the answer: no repair can fix it.
    return { ok: false, rule: false, threw: true, error: new QualityError(`the stage's check() threw: ${errorMessage(err)}`, { rawOutput: result.text }) };
  }
  if (broken) return { ok: false, rule: true, error: new QualityError(`business rule: ${broken}`, { rawOutput: result.text }) };
  return { ok: true, value: checked.value };
}

export function repairRequest(request: CompletionRequest, error: QualityError): CompletionRequest {
  return {
    ...request,
    messages: [
      ...request.messages,
      { role: "assistant", content: error.rawOutput ?? "" },
      {
        role: "user",
        content: `Your previous answer was rejected: ${error.message}. Answer again with only a JSON object that matches the ${request.schema.name} schema.`,
      },
    ],
  };
}

/**
 * Call the provider for one item under the engine's retry policy: transient
 * failures back off (honouring retry-after) up to `maxAttempts`; deterministic
 * failures stop at once; a quality failure gets one repair attempt that shows
 * the model its error. The SDKs' own retries are off, so nothing retries twice.
 */
export async function callLlm(ctx: RunContext, stage: LlmStage, provider: Provider, providerName: string, request: CompletionRequest, input: StageInput, hash: string, acquire: <T>(fn: () => Promise<T>) => Promise<T>, options: { repair?: boolean } = {}): Promise<LlmOutcome> {
  const attempts: AttemptRecord[] = [];
  let current = request;
  // `repair: false` when this call already is the repair (of a batch answer).
  let repaired = options.repair === false;
  let transientTries = 0;
  for (;;) {
    const started = performance.now();
    const base = { attempt: attempts.length + 1, provider: providerName, model: request.model, mode: "realtime" as const, requestHash: hash };
    // The request itself (not a repair) is journaled by the transport the
    // moment its answer arrives: set inside `acquire`, which may run the call
    // from another async context.
    let journaled = false;
    const journal = ctx.journal;
    // Every call out is journaled as sent, and as ended when it comes back (the raw answer says so itself).
    let call: number | undefined;
    // Whose call it is, so a stopped process's calls are counted in what its run cost (see `journal.ts`).
    const of = journal ? { run: ctx.runId, stage: stage.id, item: input.itemId, attempt: base.attempt, provider: providerName, model: request.model } : undefined;
    const tap: AnswerTap | undefined =
      journal && current === request
        ? (raw) => {
            journal.recordRaw(hash, providerName, request.model, raw, call, of);
            journaled = true;
          }
        : undefined;
    // A failure to reserve is not the item's: it stops the call as it is (budget exhausted, store down).
    let unreserved = false;
    try {
      const result = await acquire(async () => {
        const budget = ctx.budget;
        let hold: Hold | undefined;
        if (budget) {
          try {
            hold = await budget.reserve(budget.estimateUsd(current, "realtime"));
          } catch (err) {
            unreserved = true;
            throw err;
          }
        }
        let answer: CompletionResult | undefined;
        call = journal?.sending(of, hold);
        try {
          answer = await withAnswerTap(tap, () => provider.complete(current, { signal: ctx.signal }));
          return answer;
        } finally {
          if (call !== undefined && !journaled) journal!.ended(call);
          // Settled from usage: what the call cost (nothing, if it failed), not what it reserved.
          if (hold) budget!.settle(hold, answer ? ctx.providers.cost(request.model, answer.usage, "realtime") : 0, request.model, answer?.usage.outputTokens);
        }
      });
      const costUsd = ctx.providers.cost(request.model, result.usage, "realtime");
      const record: AttemptRecord = {
        ...base,
        inputTokens: result.usage.inputTokens,
        outputTokens: result.usage.outputTokens,
        cachedTokens: result.usage.cachedInputTokens ?? 0,
        costUsd,
        listCostUsd: costUsd,
        latencyMs: Math.round(performance.now() - started),
      };
      attempts.push(record);
      const checked = checkCompletion(stage, input, result);
      if (checked.ok) return { status: "succeeded", value: checked.value, attempts, response: result, journaled };
      record.errorClass = "quality";
      record.errorMessage = checked.error.message;
      if (checked.threw) return { status: "failed_terminal", errorClass: "deterministic", message: checked.error.message, attempts };
      if (!repaired) {
        repaired = true;
        current = repairRequest(request, checked.error);
        continue;
      }
      return {
        status: checked.rule ? "needs_review" : "failed_terminal",
        errorClass: "quality",
        message: `${checked.error.message} (after one repair attempt)`,
        attempts,
      };
    } catch (err) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      if (err instanceof StageHaltedError || unreserved) throw err;
      if (err instanceof DeterministicError && err.stageWide) throw stageHalted(ctx, stage, err);
      if (err instanceof TransientError && err.notSent) {
        // The circuit is open: nothing was sent, so no attempt is recorded or spent. Wait for it,
        // saying so, unless the provider has failed every call for too long: then the stage stops.
        if (err.outageMs !== undefined && err.outageMs >= ctx.options.outageLimitMs) {
          throw stageHalted(ctx, stage, new DeterministicError(`${providerName} failed every call for ${fmtMs(err.outageMs)} (${err.message.replace(/; retry in \d+ ms$/, "")})`, { stageWide: true }));
        }
        sayWaiting(ctx, providerName, err);
        await sleep(Math.max(1_000, err.retryAfterMs ?? 0), ctx.signal);
        continue;
      }
      const cls = failureClassOf(err);
      attempts.push({ ...base, inputTokens: 0, outputTokens: 0, cachedTokens: 0, costUsd: 0, listCostUsd: 0, latencyMs: Math.round(performance.now() - started), errorClass: cls, errorMessage: errorMessage(err) });
      if (err instanceof TransientError) {
        transientTries++;
        if (transientTries >= ctx.options.maxAttempts) {
          return { status: "failed_terminal", errorClass: "transient", message: `${errorMessage(err)} (gave up after ${transientTries} attempts)`, attempts };
        }
        await sleep(backoffMs(transientTries, ctx.options, err.retryAfterMs), ctx.signal);
        continue;
      }
      const message = err instanceof DeterministicError ? errorMessage(err) : `unexpected error: ${errorMessage(err)}`;
      return { status: "failed_terminal", errorClass: cls, message, attempts };
    }
  }
}

/** When each provider's wait on an open circuit was last said, per logger (one line a minute, not one per call). */
const saidWaiting = new WeakMap<Logger, Map<string, number>>();

function sayWaiting(ctx: RunContext, providerName: string, err: TransientError): void {
  const said = saidWaiting.get(ctx.logger) ?? new Map<string, number>();
  saidWaiting.set(ctx.logger, said);
  const now = Date.now();
  if (now - (said.get(providerName) ?? 0) < 60_000) return;
  said.set(providerName, now);
  const left = Math.max(0, ctx.options.outageLimitMs - (err.outageMs ?? 0));
  ctx.logger.warn(`${err.message.replace(/; retry in \d+ ms$/, "")}: calls wait for it, one probe at a time; the stage stops in ${fmtMs(left)} if none gets through`);
}

/**
 * The error that stops a stage whose provider failed for every item alike (a
 * revoked key, an unknown model, no quota): the run ends `failed` with it,
 * and its items stay queued for `resume`.
 */
export function stageHalted(ctx: RunContext, stage: LlmStage, cause: DeterministicError): StageHaltedError {
  return new StageHaltedError(
    `stage ${stage.id} stopped: ${cause.message.replace(/\.+$/, "")}. Every call of the stage would fail alike, so its items stay queued; fix the cause, then \`sluice resume ${ctx.runId}\``,
    { stageId: stage.id, cause },
  );
}
