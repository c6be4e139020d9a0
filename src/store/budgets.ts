import { sql } from "drizzle-orm";
import type { Database } from "./database.ts";
import { textArray } from "./sql.ts";

/**
 * `budgets` and `spend_reservations`: spending caps and what calls in flight
 * hold of them. Spend is reserved here before a call is sent (from its token
 * estimate and the price table) and settled from its usage after, so every
 * process and Trigger.dev task run sharing a budget sees the same figures,
 * and the cap holds with calls in flight: a reservation is granted only if
 * `spent + reserved` plus it fits under the cap, checked and taken in one
 * statement with the budget rows locked (in key order, so two statements over
 * overlapping keys cannot deadlock).
 *
 * A holder is a worker (its realtime calls in flight: released when its
 * heartbeat lapses, like its claims) or a provider batch (`batch:<id>`: the
 * whole batch, released when the batch is collected or withdrawn).
 */

export interface BudgetCap {
  key: string;
  capUsd: number;
}

export interface BudgetRow {
  key: string;
  capUsd: number;
  spentUsd: number;
  reservedUsd: number;
}

/** What one call reserved, and under which budgets (the engine's `Hold`). */
export interface Reservation {
  keys: readonly string[];
  amountUsd: number;
}

/** Budget key of a run. */
export const runBudgetKey = (runId: string) => `run:${runId}`;
/** Budget key of a pipeline's UTC day (`day` as YYYY-MM-DD). */
export const dayBudgetKey = (pipelineId: string, day: string) => `day:${pipelineId}:${day}`;

/**
 * Record caps. With `overwrite`, a cap already recorded is replaced (a
 * `--budget` given again, a `perDay` changed in the definition); without,
 * only keys not yet recorded get one.
 */
export async function setBudgetCaps(db: Database, caps: readonly BudgetCap[], { overwrite = true } = {}): Promise<void> {
  if (caps.length === 0) return;
  await db.rows(sql`
    INSERT INTO budgets AS b (key, cap_usd)
    SELECT c.key, c.cap FROM jsonb_to_recordset(${JSON.stringify(caps.map((c) => ({ key: c.key, cap: c.capUsd })))}::jsonb) AS c(key text, cap float8)
    ORDER BY c.key
    ON CONFLICT (key) DO ${overwrite ? sql`UPDATE SET cap_usd = excluded.cap_usd, updated_at = now()` : sql`NOTHING`}`);
}

export async function budgetRows(db: Database, keys: readonly string[]): Promise<BudgetRow[]> {
  if (keys.length === 0) return [];
  return db.rows<BudgetRow>(sql`
    SELECT key, cap_usd AS "capUsd", spent_usd AS "spentUsd", reserved_usd AS "reservedUsd"
    FROM budgets WHERE key = ANY(${textArray(keys)}::text[]) ORDER BY key`);
}

/** Calls of a holder that ended: the reservation they release, and what they cost. */
export interface Settlement {
  key: string;
  releaseUsd: number;
  spendUsd: number;
}

export interface SpendRequest {
  holder: string;
  runId: string;
  /** Settled first, in the same statement. */
  settle?: readonly Settlement[];
  /** Reservations to take, in order, each against every one of `keys`. */
  ask?: { keys: readonly string[]; amounts: readonly number[] };
}

/**
 * Settle what `settle` says and grant reservations of `ask`, in one
 * statement. Asks are granted in order while they fit under every key's cap
 * (after the settlements): the result says how many were granted (a prefix of
 * the asks), and the budgets as they are now. A settlement releases at most
 * what the holder still holds (a reservation already released as stale is
 * not released twice); what a call cost is always added to `spent`.
 */
export async function adjustSpend(db: Database, req: SpendRequest): Promise<{ granted: number; budgets: BudgetRow[] }> {
  const settle = req.settle ?? [];
  const askKeys = req.ask?.keys ?? [];
  const amounts = req.ask?.amounts ?? [];
  const allKeys = [...new Set([...askKeys, ...settle.map((s) => s.key)])];
  if (allKeys.length === 0) return { granted: 0, budgets: [] };
  const keysParam = textArray(allKeys);
  const askParam = textArray(askKeys);
  const [row] = await db.rows<{ granted: number; budgets: BudgetRow[] | null }>(sql`
    WITH s AS (
      SELECT key, sum(release) AS release, sum(spend) AS spend
      FROM jsonb_to_recordset(${JSON.stringify(settle.map((x) => ({ key: x.key, release: x.releaseUsd, spend: x.spendUsd })))}::jsonb) AS s(key text, release float8, spend float8)
      GROUP BY key
    ),
    h AS MATERIALIZED (
      SELECT budget_key AS key, amount_usd AS amount FROM spend_reservations
      WHERE holder = ${req.holder} AND budget_key = ANY(${keysParam}::text[])
      ORDER BY budget_key FOR UPDATE
    ),
    l AS MATERIALIZED (
      SELECT key, cap_usd, spent_usd, reserved_usd FROM budgets WHERE key = ANY(${keysParam}::text[]) ORDER BY key FOR UPDATE
    ),
    a AS MATERIALIZED (
      SELECT l.key, l.cap_usd AS cap, l.spent_usd + coalesce(s.spend, 0) AS spent, l.reserved_usd AS reserved,
        coalesce(h.amount, 0) AS held, least(coalesce(s.release, 0), coalesce(h.amount, 0)) AS freed,
        l.key = ANY(${askParam}::text[]) AS asked
      FROM l LEFT JOIN s ON s.key = l.key LEFT JOIN h ON h.key = l.key
    ),
    room AS (
      SELECT min(cap - spent - greatest(0, reserved - freed)) AS room, count(*)::int AS n FROM a WHERE asked
    ),
    asks AS (
      SELECT amount, sum(amount) OVER (ORDER BY ord) AS cum
      FROM unnest(${`{${amounts.map((x) => x.toString()).join(",")}}`}::float8[]) WITH ORDINALITY AS q(amount, ord)
    ),
    g AS MATERIALIZED (
      SELECT count(*)::int AS k, coalesce(sum(asks.amount), 0)::float8 AS x
      FROM asks, room WHERE room.n = ${askKeys.length} AND asks.cum <= room.room + 1e-12
    ),
    upd AS (
      UPDATE budgets b SET spent_usd = a.spent,
        reserved_usd = greatest(0, a.reserved - a.freed) + CASE WHEN a.asked THEN g.x ELSE 0 END,
        updated_at = now()
      FROM a, g WHERE b.key = a.key
      RETURNING b.key, b.cap_usd, b.spent_usd, b.reserved_usd
    ),
    hold AS (
      INSERT INTO spend_reservations (holder, budget_key, run_id, amount_usd)
      SELECT ${req.holder}, a.key, ${req.runId}, a.held - a.freed + CASE WHEN a.asked THEN g.x ELSE 0 END
      FROM a, g WHERE (a.asked AND g.x > 0) OR a.held > 0
      ORDER BY a.key
      ON CONFLICT (holder, budget_key) DO UPDATE SET amount_usd = excluded.amount_usd, updated_at = now()
    )
    SELECT g.k AS granted,
      (SELECT json_agg(json_build_object('key', key, 'capUsd', cap_usd, 'spentUsd', spent_usd, 'reservedUsd', reserved_usd) ORDER BY key) FROM upd) AS budgets
    FROM g`);
  return { granted: row?.granted ?? 0, budgets: row?.budgets ?? [] };
}

/**
 * Release everything a holder holds, and add `spendUsd` to each budget it
 * held part of (a provider batch collected: what it cost). Returns false when
 * the holder held nothing: it was settled already (a batch collected twice
 * after a crash), and nothing is added again.
 */
export async function releaseHolder(db: Database, holder: string, spendUsd = 0): Promise<boolean> {
  const rows = await db.rows<{ key: string }>(sql`
    WITH h AS (
      DELETE FROM spend_reservations WHERE holder = ${holder} RETURNING budget_key, amount_usd
    ),
    l AS MATERIALIZED (
      SELECT key FROM budgets WHERE key IN (SELECT budget_key FROM h) ORDER BY key FOR UPDATE
    )
    UPDATE budgets b SET reserved_usd = greatest(0, b.reserved_usd - h.amount_usd), spent_usd = b.spent_usd + ${spendUsd}, updated_at = now()
    FROM h, l WHERE b.key = h.budget_key AND l.key = b.key
    RETURNING b.key`);
  return rows.length > 0;
}

/**
 * Add to what budgets have spent (calls a dead process had out, at what they
 * reserved: see `engine/journal.ts`), each key's sum in one statement, the
 * budget rows locked in key order. A key with no budget row is left alone.
 */
export async function addSpend(db: Database, spends: readonly Reservation[]): Promise<void> {
  const perKey = new Map<string, number>();
  for (const { amountUsd, keys } of spends) for (const key of keys) perKey.set(key, (perKey.get(key) ?? 0) + amountUsd);
  if (perKey.size === 0) return;
  await db.rows(sql`
    WITH s AS (SELECT key, spend FROM jsonb_to_recordset(${JSON.stringify([...perKey].map(([key, spend]) => ({ key, spend })))}::jsonb) AS s(key text, spend float8)),
    l AS MATERIALIZED (SELECT key FROM budgets WHERE key IN (SELECT key FROM s) ORDER BY key FOR UPDATE)
    UPDATE budgets b SET spent_usd = b.spent_usd + s.spend, updated_at = now()
    FROM s, l WHERE b.key = s.key AND l.key = b.key`);
}

/**
 * Release reservations whose holder is gone: a worker with no heartbeat within
 * the lease (on embedded PGlite, with `everyoneElse`, any worker but `self`),
 * or a provider batch no longer in flight (or never recorded). Their calls may have been paid for
 * (a killed process's answers are replayed from its journal, and its calls
 * still out are added to `spent` at what they reserved, `addSpend`), but what
 * they held is no longer in flight, so others may use it. Returns how many holders' rows were released.
 */
export async function releaseStaleReservations(db: Database, self: string, leaseMs: number, everyoneElse = false): Promise<number> {
  const rows = await db.rows<{ key: string }>(sql`
    WITH dead AS (
      SELECT holder, budget_key FROM spend_reservations r
      WHERE (r.holder NOT LIKE 'batch:%' AND r.holder <> ${self}
          AND ${everyoneElse ? sql`true` : sql`r.holder NOT IN (SELECT id FROM workers WHERE heartbeat_at > now() - make_interval(secs => ${leaseMs / 1000}))`})
        -- A batch reserves just before it is recorded: one not recorded within a lease never will be.
        OR (r.holder LIKE 'batch:%' AND r.updated_at < now() - make_interval(secs => ${leaseMs / 1000})
          AND NOT EXISTS (SELECT 1 FROM provider_batches b WHERE b.id = substr(r.holder, 7) AND b.status <> 'collected'))
      ORDER BY holder, budget_key FOR UPDATE SKIP LOCKED
    ),
    gone AS (
      DELETE FROM spend_reservations r USING dead WHERE r.holder = dead.holder AND r.budget_key = dead.budget_key
      RETURNING r.budget_key, r.amount_usd
    ),
    per AS (SELECT budget_key, sum(amount_usd) AS amount FROM gone GROUP BY budget_key),
    l AS MATERIALIZED (SELECT key FROM budgets WHERE key IN (SELECT budget_key FROM per) ORDER BY key FOR UPDATE)
    UPDATE budgets b SET reserved_usd = greatest(0, b.reserved_usd - per.amount), updated_at = now()
    FROM per, l WHERE b.key = per.budget_key AND l.key = b.key
    RETURNING b.key`);
  return rows.length;
}
