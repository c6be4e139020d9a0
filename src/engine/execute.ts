import { sql } from "drizzle-orm";
import { errorMessage } from "../core/errors.ts";
import type { ItemStatus } from "../core/status.ts";
import { isLlmStage, type CommitStage, type LlmStage, type StageDef, type StageInput, type ValidationVerdict } from "../core/types.ts";
import type { CompletionRequest, CompletionResult, Provider } from "../providers/types.ts";
import type { RunContext, StagePlan } from "./context.ts";
import { anyText, idRows } from "../store/sql.ts";
import { loadInputs, type LoadedInput } from "./inputs.ts";
import { buildRequest, callLlm, checkCompletion, customIdFor, endpointOf, providerNameOf, requestHash } from "./llm-call.ts";
import { groupWriter, persistResults, type ItemResult } from "./persist.ts";
import { executeBatch, useBatch } from "./batch.ts";

export interface ChunkHooks {
  /** Bounds provider calls in flight across every chunk of a stage. */
  acquire: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Results written so far (for progress displays). */
  onPersisted?: (results: ItemResult[]) => void;
  /**
   * Answers of requests sent by any chunk of this stage in this process, by
   * request hash: a chunk that needs the same request waits for that answer
   * instead of paying for it again (the request cache covers what is written).
   */
  inflight?: Map<string, Promise<CompletionResult | undefined>>;
}

/** Results of LLM calls are written in groups this size (or on this interval), not one by one. */
const FLUSH_SIZE = 250;
const FLUSH_MS = 500;

/**
 * Execute one stage for a chunk of claimed items: gate, reuse, compute, write.
 * The local runner and the Trigger.dev stage task both call this; it is the
 * only implementation of stage execution.
 */
export async function executeChunk(ctx: RunContext, stage: StagePlan, itemIds: string[], hooks: ChunkHooks): Promise<ItemResult[]> {
  const inputs = await loadInputs(ctx, stage, itemIds);
  return (await executeLoaded(ctx, stage, itemIds, inputs, hooks)).results;
}

/**
 * `executeChunk` for inputs already in memory (a chunk going on from the
 * stage before, in the same process). With `insert`, the stage's work rows do
 * not exist yet and are inserted with the results (a later stage of a
 * segment). `dropped` lists the items whose results were not written (a lost
 * claim, or a row another worker had already recorded). With `stored` (the
 * stage's outputs already read, see `storedOutputs`), the reuse rule is
 * checked against those, and reused results carry their output's value and
 * hash (`existing`), so the next stage's inputs can be built without reading
 * them back.
 */
export async function executeLoaded(
  ctx: RunContext,
  stage: StagePlan,
  itemIds: string[],
  inputs: Map<string, LoadedInput>,
  hooks: ChunkHooks,
  { insert = false, stored }: { insert?: boolean; stored?: StoredOutputs } = {},
): Promise<{ results: ItemResult[]; dropped: Set<string>; replaced: Set<string> }> {
  const def = ctx.pipeline.stages[stage.index]!;
  const dropped = new Set<string>();
  const replaced = new Set<string>();
  const write: Flush = async (results) => {
    const written = await persistResults(ctx, stage, results, { insert });
    for (const id of written.dropped) dropped.add(id);
    for (const id of written.replaced) replaced.add(id);
    hooks.onPersisted?.(results);
  };
  const done: ItemResult[] = [];
  const pending: { itemId: string; loaded: LoadedInput }[] = [];

  for (const itemId of itemIds) {
    const loaded = inputs.get(itemId);
    if (!loaded) {
      done.push({ itemId, status: "failed_terminal", reused: false, attempts: [], errorClass: "deterministic", errorMessage: "item row missing from the run (store inconsistency)" });
    } else if (def.when && !safeGate(def, loaded.input, done, itemId)) {
      if (!done.some((d) => d.itemId === itemId)) done.push({ itemId, status: "gated_out", reused: false, attempts: [] });
    } else {
      pending.push({ itemId, loaded });
    }
  }

  const keys = pending.map((p) => ({ itemId: p.itemId, inputHash: p.loaded.inputHash }));
  const existing = stored ? matchOutputs(stored, keys) : await lookupOutputs(ctx, stage, keys);
  const toCompute: typeof pending = [];
  for (const p of pending) {
    const hit = existing.get(p.itemId);
    if (hit && def.kind !== "commit") {
      done.push({ itemId: p.itemId, status: hit.status, inputHash: p.loaded.inputHash, reused: true, outputId: hit.id, attempts: [], existing: hit.value });
    } else if (hit) {
      // A commit is re-applied even when its output is reused: the upsert is a
      // no-op for unchanged rows and restores a row that was withdrawn.
      const result = computeCommit(def as CommitStage, p.loaded);
      done.push({ ...result, reused: true, outputId: hit.id, output: undefined });
    } else {
      toCompute.push(p);
    }
  }

  if (!isLlmStage(def)) {
    for (const p of toCompute) done.push(await computeLocal(def, p.loaded));
    await write(done);
    return { results: done, dropped, replaced };
  }

  const results = await executeLlm(ctx, stage, def, toCompute, done, hooks, write);
  return { results, dropped, replaced };
}

/** Writes a group of results (and reports them as persisted). */
type Flush = (results: ItemResult[]) => Promise<void>;

function safeGate(def: StageDef, input: StageInput, done: ItemResult[], itemId: string): boolean {
  try {
    return def.when!(input);
  } catch (err) {
    done.push({ itemId, status: "failed_terminal", reused: false, attempts: [], errorClass: "deterministic", errorMessage: `gate of stage ${def.id} threw: ${errorMessage(err)}` });
    return false;
  }
}

type Existing = { id: number; status: ItemStatus; value?: { value: unknown; hash: string } };

/** Outputs stored for a stage version, by item: every input hash an item has one for. */
export type StoredOutputs = Map<string, { id: number; inputHash: string; status: ItemStatus; value: unknown; hash: string }[]>;

/** The reuse rule against outputs already read: an output for this item and this input hash. */
function matchOutputs(stored: StoredOutputs, keys: { itemId: string; inputHash: string }[]): Map<string, Existing> {
  const found = new Map<string, Existing>();
  for (const { itemId, inputHash } of keys) {
    const hit = stored.get(itemId)?.find((o) => o.inputHash === inputHash);
    if (hit) found.set(itemId, { id: hit.id, status: hit.status, value: { value: hit.value, hash: hit.hash } });
  }
  return found;
}

async function lookupOutputs(ctx: RunContext, stage: StagePlan, keys: { itemId: string; inputHash: string }[]): Promise<Map<string, Existing>> {
  const found = new Map<string, Existing>();
  if (keys.length === 0) return found;
  // One index probe per item on (stage version, item); the input hash is
  // matched here.
  const wanted = new Map(keys.map((k) => [k.itemId, k.inputHash]));
  const rows = await ctx.db.rows<{ id: number | string; item_id: string; input_hash: string; status: ItemStatus }>(sql`
    SELECT s.*
    FROM ${idRows([...wanted.keys()])}
    CROSS JOIN LATERAL (
      SELECT id, item_id, input_hash, status FROM stage_outputs
      WHERE pipeline = ${ctx.pipeline.id} AND stage_id = ${stage.id} AND stage_version = ${stage.version}
        AND item_id = i.item_id OFFSET 0) s`);
  for (const row of rows) {
    if (wanted.get(row.item_id) !== row.input_hash) continue;
    found.set(row.item_id, { id: Number(row.id), status: row.status });
  }
  return found;
}

/**
 * Every output stored for the given stages' versions and items, read at once
 * (a chunk about to go through those stages): by stage id, then by item.
 */
export async function storedOutputs(ctx: RunContext, stages: readonly StagePlan[], itemIds: string[]): Promise<Map<string, StoredOutputs>> {
  const byStage = new Map<string, StoredOutputs>(stages.map((s) => [s.id, new Map()]));
  if (itemIds.length === 0 || stages.length === 0) return byStage;
  const versions = JSON.stringify(stages.map((s) => ({ stage_id: s.id, stage_version: s.version })));
  const rows = await ctx.db.rows<{ id: number | string; stage_id: string; item_id: string; input_hash: string; status: ItemStatus; output: unknown; output_hash: string }>(sql`
    SELECT s.*
    FROM jsonb_to_recordset(${versions}::jsonb) AS v(stage_id text, stage_version text)
    CROSS JOIN ${idRows(itemIds)}
    CROSS JOIN LATERAL (
      SELECT id, stage_id, item_id, input_hash, status, output, output_hash FROM stage_outputs
      WHERE pipeline = ${ctx.pipeline.id} AND stage_id = v.stage_id AND stage_version = v.stage_version
        AND item_id = i.item_id OFFSET 0) s`);
  for (const row of rows) {
    const forStage = byStage.get(row.stage_id)!;
    let list = forStage.get(row.item_id);
    if (!list) forStage.set(row.item_id, (list = []));
    list.push({ id: Number(row.id), inputHash: row.input_hash, status: row.status, value: row.output ?? null, hash: row.output_hash });
  }
  return byStage;
}

function computeCommit(def: CommitStage, loaded: LoadedInput): ItemResult {
  const itemId = loaded.input.itemId;
  let row: Record<string, unknown>;
  try {
    row = def.row(loaded.input);
  } catch (err) {
    return { itemId, status: "failed_terminal", inputHash: loaded.inputHash, reused: false, attempts: [], errorClass: "deterministic", errorMessage: `commit row() threw: ${errorMessage(err)}` };
  }
  const key = row[def.target.key];
  if (key === undefined || key === null || key === "") {
    return { itemId, status: "failed_terminal", inputHash: loaded.inputHash, reused: false, attempts: [], errorClass: "deterministic", errorMessage: `commit row has no "${def.target.key}" (target.key)` };
  }
  return {
    itemId,
    status: "committed",
    inputHash: loaded.inputHash,
    reused: false,
    attempts: [],
    output: { value: row, status: "committed", costUsd: 0 },
    targetRow: { key: String(key), itemId, data: row },
  };
}

const VERDICT_STATUS: Record<ValidationVerdict["status"], ItemStatus> = {
  valid: "validated",
  review: "needs_review",
  invalid: "failed_terminal",
};

async function computeLocal(def: StageDef, loaded: LoadedInput): Promise<ItemResult> {
  const itemId = loaded.input.itemId;
  if (def.kind === "commit") return computeCommit(def, loaded);
  let value: unknown;
  try {
    value = await (def as { run: (i: StageInput) => unknown }).run(loaded.input);
  } catch (err) {
    return { itemId, status: "failed_terminal", inputHash: loaded.inputHash, reused: false, attempts: [], errorClass: "deterministic", errorMessage: `stage ${def.id} threw: ${errorMessage(err)}` };
  }
  let status: ItemStatus = "succeeded_unvalidated";
  let reason: string | undefined;
  if (def.kind === "validate") {
    const verdict = value as ValidationVerdict;
    status = VERDICT_STATUS[verdict?.status] ?? "failed_terminal";
    if (verdict?.status !== "valid") reason = (verdict as { reasons?: string[] })?.reasons?.join("; ") ?? "validator returned no verdict";
  } else if (def.kind === "filter" && (value as { keep?: boolean })?.keep === false) {
    status = "gated_out";
  }
  return {
    itemId,
    status,
    inputHash: loaded.inputHash,
    reused: false,
    attempts: [],
    output: { value: value ?? null, status, costUsd: 0 },
    errorClass: status === "failed_terminal" || status === "needs_review" ? "quality" : undefined,
    errorMessage: reason,
  };
}

async function lookupCache(ctx: RunContext, hashes: string[]): Promise<Map<string, CompletionResult>> {
  const found = new Map<string, CompletionResult>();
  if (hashes.length === 0) return found;
  const rows = await ctx.db.rows<{ request_hash: string; response: CompletionResult }>(sql`
    SELECT request_hash, response FROM request_cache
    WHERE request_hash = ${anyText(hashes)}`);
  for (const row of rows) found.set(row.request_hash, row.response);
  return found;
}

async function executeLlm(ctx: RunContext, stage: StagePlan, def: LlmStage, toCompute: { itemId: string; loaded: LoadedInput }[], done: ItemResult[], hooks: ChunkHooks, write: Flush): Promise<ItemResult[]> {
  const providerName = providerNameOf(ctx, def);
  const provider = ctx.providers.get(providerName);
  const requests = toCompute.map((p) => {
    const request = buildRequest(def, p.loaded.input, customIdFor(stage, p.itemId));
    return { ...p, request, hash: requestHash(endpointOf(ctx, providerName), request) };
  });
  const cached = await lookupCache(ctx, [...new Set(requests.map((r) => r.hash))]);
  const calls: typeof requests = [];
  for (const r of requests) {
    const hit = cached.get(r.hash);
    const checked = hit && checkCompletion(def, r.loaded.input, hit);
    if (checked && checked.ok) {
      done.push({ itemId: r.itemId, status: "succeeded_unvalidated", inputHash: r.loaded.inputHash, reused: true, attempts: [], output: { value: checked.value, status: "succeeded_unvalidated", costUsd: 0 } });
    } else if (checked && checked.threw) {
      done.push({ itemId: r.itemId, status: "failed_terminal", inputHash: r.loaded.inputHash, reused: false, attempts: [], errorClass: "deterministic", errorMessage: checked.error.message });
    } else {
      calls.push(r);
    }
  }
  await write(done);

  // One request per distinct request hash: identical requests in this chunk
  // (duplicate items under different ids) wait for the first one's answer
  // instead of paying for it again.
  const leaders = new Map<string, (typeof calls)[number]>();
  const followers: typeof calls = [];
  for (const r of calls) {
    if (leaders.has(r.hash)) followers.push(r);
    else leaders.set(r.hash, r);
  }
  const unique = [...leaders.values()];

  const led = useBatch(ctx, def, provider, unique.length)
    ? await executeBatch(ctx, stage, def, providerName, provider, unique, hooks.onPersisted)
    : await executeRealtime(ctx, def, providerName, provider, unique, hooks, write);
  const byItem = new Map(led.map((r) => [r.itemId, r]));
  const copies: ItemResult[] = followers.map((f) => {
    const lead = byItem.get(leaders.get(f.hash)!.itemId);
    const base = { itemId: f.itemId, inputHash: f.loaded.inputHash, attempts: [] };
    // The leader was not answered here (its claim was taken over before its
    // batch went out): this item waits its turn, and by then the answer is
    // in the request cache or the leader's new owner has it.
    if (!lead) return { ...base, status: "failed_retryable", reused: false, errorClass: "transient", errorMessage: "its identical request was answered elsewhere; retried" };
    const response = lead.answer ?? (lead.cache?.response as CompletionResult | undefined);
    if (!response) {
      // No answer to share: a failure is shared as it is; anything else is retried on its own.
      if (lead.status === "failed_terminal" || lead.status === "needs_review") return { ...base, status: lead.status, reused: false, errorClass: lead.errorClass, errorMessage: lead.errorMessage };
      return { ...base, status: "failed_retryable", reused: false, errorClass: "transient", errorMessage: "its identical request's answer was not available here; retried" };
    }
    // Same answer, but the stage's own rule is checked against this item.
    const checked = checkCompletion(def, f.loaded.input, response);
    if (checked.ok) return { ...base, status: "succeeded_unvalidated", reused: true, output: { value: checked.value, status: "succeeded_unvalidated", costUsd: 0 } };
    return { ...base, status: checked.rule ? "needs_review" : "failed_terminal", reused: false, errorClass: checked.threw ? "deterministic" : "quality", errorMessage: checked.error.message };
  });
  await write(copies);
  return [...done, ...led, ...copies];
}

/** Realtime calls with bounded concurrency; results are written in groups as they complete. */
async function executeRealtime(ctx: RunContext, def: LlmStage, providerName: string, provider: Provider, calls: { itemId: string; loaded: LoadedInput; request: CompletionRequest; hash: string }[], hooks: ChunkHooks, write: Flush): Promise<ItemResult[]> {
  const all: ItemResult[] = [];
  const writer = groupWriter(write, FLUSH_SIZE, FLUSH_MS);
  // allSettled, not all: on Ctrl-C the calls that did finish (and were paid)
  // are still written before the abort propagates.
  const settled = await Promise.allSettled(
    calls.map(async (r) => {
      // Wait for another chunk's call of the same request, if there is one.
      let shared: CompletionResult | undefined;
      for (let pending = hooks.inflight?.get(r.hash); pending && !shared; pending = hooks.inflight?.get(r.hash)) {
        shared = await pending;
        // That call failed: forget it, so the next caller makes its own.
        if (!shared && hooks.inflight?.get(r.hash) === pending) hooks.inflight.delete(r.hash);
      }
      // Otherwise register this call, with no await between the lookup and the set.
      let answered: (response: CompletionResult | undefined) => void = () => {};
      const mine = shared ? undefined : new Promise<CompletionResult | undefined>((resolve) => (answered = resolve));
      if (mine) hooks.inflight?.set(r.hash, mine);
      if (shared) {
        const checked = checkCompletion(def, r.loaded.input, shared);
        const base = { itemId: r.itemId, inputHash: r.loaded.inputHash, attempts: [] };
        const copy: ItemResult = checked.ok
          ? { ...base, status: "succeeded_unvalidated", reused: true, output: { value: checked.value, status: "succeeded_unvalidated", costUsd: 0 }, answer: shared }
          : { ...base, status: checked.rule ? "needs_review" : "failed_terminal", reused: false, errorClass: checked.threw ? "deterministic" : "quality", errorMessage: checked.error.message, answer: shared };
        all.push(copy);
        await writer.add(copy);
        return;
      }
      let outcome: Awaited<ReturnType<typeof callLlm>> | undefined;
      try {
        // Once results cannot be written, no more calls are paid for.
        if (writer.failed) throw writer.failed;
        outcome = await callLlm(ctx, def, provider, providerName, r.request, r.loaded.input, r.hash, hooks.acquire);
      } finally {
        const response = outcome?.status === "succeeded" ? outcome.response : undefined;
        if (!response && hooks.inflight?.get(r.hash) === mine) hooks.inflight?.delete(r.hash);
        answered(response);
      }
      const result: ItemResult =
        outcome.status === "succeeded"
          ? {
              itemId: r.itemId,
              status: "succeeded_unvalidated",
              inputHash: r.loaded.inputHash,
              reused: false,
              attempts: outcome.attempts,
              output: { value: outcome.value, status: "succeeded_unvalidated", costUsd: sumCost(outcome.attempts) },
              cache: { requestHash: r.hash, provider: providerName, model: def.model, response: outcome.response },
              answer: outcome.response,
            }
          : {
              itemId: r.itemId,
              status: outcome.status,
              inputHash: r.loaded.inputHash,
              reused: false,
              attempts: outcome.attempts,
              errorClass: outcome.errorClass,
              errorMessage: outcome.message,
            };
      all.push(result);
      await writer.add(result);
    }),
  );
  await writer.close();
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw failed.reason;
  return all;
}

function sumCost(attempts: { costUsd: number }[]): number {
  return attempts.reduce((sum, a) => sum + a.costUsd, 0);
}
