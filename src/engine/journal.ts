import { isProcessAlive } from "../core/pid.ts";
import { appendFileSync, closeSync, createReadStream, mkdirSync, openSync, readdirSync, rmSync } from "node:fs";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { completionFromRaw, type RawAnswer } from "../providers/transport.ts";
import type { Usage } from "../providers/types.ts";
import { addSpend, type Reservation } from "../store/budgets.ts";
import { cacheResponses, type CacheEntry } from "../store/cache.ts";
import type { Database } from "../store/database.ts";
import { recordJournaledAttempts, type JournaledAttempt } from "../store/spend.ts";

/**
 * Answers are written to the store in groups (one statement per group keeps
 * a run fast), so a process killed between two groups would lose answers it
 * had already paid for. The journal closes that window: each answer is
 * appended to a local file the moment it arrives (one `write`, which a
 * killed process does not undo), and a process that starts later puts the
 * answers of journals whose process is gone into the request cache. The
 * items are then answered from the cache, not paid for again: after a kill,
 * only the calls in flight at that moment are lost.
 *
 * Answers over HTTP are journaled raw, from the SDKs' transport, in the
 * callback that read their last byte (`recordRaw`, see
 * `providers/transport.ts`); any other answer (an in-process provider, an
 * answer after a repair) when the engine has it (`record`).
 *
 * A call is journaled with its run, stage, item and attempt (`CallOf`), so
 * what the stopped process paid is counted too: a call whose answer it never
 * wrote becomes an attempt of its run, at what the answer's usage costs, and
 * a call still out when it stopped an attempt that says so (its cost unknown).
 * A budgeted call is journaled with what it reserved (its `Reservation`): the dead
 * process's reservations are released once its heartbeat lapses, so the
 * budgets count a call still out at what it reserved instead, an upper bound
 * of what it cost (some never reached the provider). A call that came back is
 * settled by its process in the next budget statement; one whose settlement
 * the kill cut off is not counted (the journal cannot tell the two apart).
 */
export interface CallOf {
  run: string;
  stage: string;
  item: string;
  attempt: number;
  provider: string;
  model: string;
}

export class AnswerJournal {
  private fd: number | undefined;
  readonly path: string;

  constructor(readonly dir: string) {
    this.path = join(dir, `${process.pid}-${randomBytes(4).toString("hex")}.jsonl`);
  }

  record(entry: CacheEntry): void {
    this.write(entry);
  }

  recordRaw(requestHash: string, provider: string, model: string, raw: RawAnswer, call?: number, of?: CallOf): void {
    this.write({ requestHash, provider, model, raw, ...(call !== undefined ? { done: call } : {}), ...(of ? { of } : {}) });
  }

  private calls = 0;

  /**
   * A paid call is about to go out: returns its number, for `ended`. A call
   * that went out and never ended is one the process was killed in the middle
   * of: paid (or about to be), its answer lost. A process that starts later
   * says how many there were (see `replayJournals`).
   */
  sending(of?: CallOf, held?: Reservation): number {
    const call = ++this.calls;
    this.write({ sent: call, ...(of ? { of } : {}), ...(held ? { held } : {}) });
    return call;
  }

  /** The call came back, with an answer or an error (an answer journaled raw says so itself). */
  ended(call: number): void {
    this.write({ done: call });
  }

  private write(line: object): void {
    if (this.fd === undefined) {
      mkdirSync(this.dir, { recursive: true });
      this.fd = openSync(this.path, "a");
    }
    appendFileSync(this.fd, `${JSON.stringify(line)}\n`);
  }

  /** Close the file; with `written` (every answer is in the store now), remove it too. */
  close({ written }: { written: boolean }): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    if (written) rmSync(this.path, { force: true });
  }
}

/**
 * Put the answers of journals left by processes that are gone into the
 * request cache, then remove those journals. Returns how many answers were
 * replayed. A line cut short by the kill is skipped; so is a raw answer that
 * no check could pass (not JSON, cut at the token limit, a refusal), which
 * the request cache never holds. Of two lines for one request the later
 * wins: the answer after a repair follows the one that needed it.
 *
 * A journal holds every answer its process received, so a long run's can be
 * larger than one string may be (a million answers take over a gigabyte): it
 * is read as a stream of lines, twice. The first pass finds the last line of
 * each request and the calls that never came back; the second writes those
 * lines' answers 500 at a time. What stays in memory is a line number per
 * request, not the answers.
 */
export async function replayJournals(
  db: Database,
  dir: string,
  onInFlight?: (gone: { pid: number; calls: number }) => void,
  price?: (model: string, usage: Usage) => { costUsd: number; listCostUsd: number },
): Promise<Replayed> {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".jsonl"));
  } catch {
    return { answers: 0, inFlight: [] };
  }
  const out: Replayed = { answers: 0, inFlight: [] };
  for (const name of names) {
    const pid = Number(name.split("-")[0]);
    if (!Number.isInteger(pid) || pid === process.pid || isProcessAlive(pid)) continue;
    const path = join(dir, name);
    // Pass 1: the last line of each request with a usable answer, and the calls sent that never ended.
    const lastLine = new Map<string, number>();
    const open = new Map<number, { of?: CallOf; held?: Reservation }>();
    for await (const { n, parsed } of journalLines(path)) {
      if (typeof parsed.sent === "number") open.set(parsed.sent, { of: parsed.of, held: parsed.held });
      if (typeof parsed.done === "number") open.delete(parsed.done);
      if (parsed.requestHash && usable(parsed)) lastLine.set(parsed.requestHash, n);
    }
    // Pass 2: those lines' answers into the request cache; those it did not hold were never written: their calls are recorded.
    let group: { entry: CacheEntry; of?: CallOf }[] = [];
    const flush = async () => {
      const added = await cacheResponses(db, group.map((g) => g.entry));
      out.answers += added.size;
      if (price) await recordJournaledAttempts(db, group.flatMap((g) => (g.of && added.has(g.entry.requestHash) ? [answeredAttempt(g.of, g.entry, price)] : [])));
      group = [];
    };
    for await (const { n, parsed } of journalLines(path)) {
      if (!parsed.requestHash || lastLine.get(parsed.requestHash) !== n) continue;
      group.push({ entry: fromLine(parsed)!, of: parsed.of });
      if (group.length === 500) await flush();
    }
    await flush();
    if (price) await recordJournaledAttempts(db, [...open.values()].flatMap(({ of, held }) => (of ? [lostAttempt(of, pid, held)] : [])));
    // Its budgets count what those calls reserved: paid or not, the cap holds across the kill.
    await addSpend(db, [...open.values()].flatMap(({ held }) => (held ? [held] : [])));
    if (open.size) {
      out.inFlight.push({ pid, calls: open.size });
      // Said before the journal goes, so a process killed in between still leaves the count to the next.
      onInFlight?.({ pid, calls: open.size });
    }
    rmSync(path, { force: true });
  }
  return out;
}

type JournalLine = CacheEntry & { raw?: RawAnswer; sent?: number; done?: number; of?: CallOf; held?: Reservation };

/** The attempt's run, stage, item, number and model, as the journal says whose call it was. */
function whose(of: CallOf): Pick<JournaledAttempt, "runId" | "stageId" | "itemId" | "attempt" | "provider" | "model"> {
  return { runId: of.run, stageId: of.stage, itemId: of.item, attempt: of.attempt, provider: of.provider, model: of.model };
}

/** A call whose answer the stopped process had and never wrote: an attempt of its run, at what the answer's usage costs. */
function answeredAttempt(of: CallOf, entry: CacheEntry, price: (model: string, usage: Usage) => { costUsd: number; listCostUsd: number }): JournaledAttempt {
  const usage = (entry.response as { usage?: Usage }).usage ?? { inputTokens: 0, outputTokens: 0 };
  return {
    ...whose(of),
    requestHash: entry.requestHash,
    inputTokens: usage.inputTokens,
    outputTokens: usage.outputTokens,
    cachedTokens: usage.cachedInputTokens ?? 0,
    ...price(of.model, usage),
  };
}

/** A call still out when the process stopped: sent (and paid, or about to be), its answer and its cost unknown. */
function lostAttempt(of: CallOf, pid: number, held?: Reservation): JournaledAttempt {
  return {
    ...whose(of),
    requestHash: "",
    inputTokens: 0,
    outputTokens: 0,
    cachedTokens: 0,
    costUsd: 0,
    listCostUsd: 0,
    errorClass: "transient",
    errorMessage: `in flight when process ${pid} stopped: paid, or about to be; its answer and cost are unknown${held ? ` (its budgets count the $${held.amountUsd.toFixed(4)} reserved for it)` : ""}`,
  };
}

/** A journal's lines, parsed, with their numbers; a line that does not parse (the last one of a killed writer) is skipped. */
async function* journalLines(path: string): AsyncGenerator<{ n: number; parsed: JournalLine }> {
  const lines = createInterface({ input: createReadStream(path, { encoding: "utf8" }), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (!line) continue;
    let parsed: JournalLine;
    try {
      parsed = JSON.parse(line) as JournalLine;
    } catch {
      continue;
    }
    yield { n, parsed };
  }
}

export interface Replayed {
  /**
   * Answers put in the request cache that it did not hold: those the process
   * received and never wrote (a run stopped at its budget wrote all of its
   * own, and its journal replays none).
   */
  answers: number;
  /** Per process gone, the calls it had sent that never came back: paid (or about to be), their answers lost with it. */
  inFlight: { pid: number; calls: number }[];
}

/** Whether a line's answer may go into the request cache (see `fromLine`). */
function usable(line: JournalLine): boolean {
  try {
    return fromLine(line) !== undefined;
  } catch {
    // An answer that is not JSON: never cached.
    return false;
  }
}

function fromLine(line: CacheEntry & { raw?: RawAnswer; done?: number; of?: CallOf }): CacheEntry | undefined {
  const { done: _done, of: _of, ...entry } = line;
  if (!entry.raw) return entry;
  const { raw, ...rest } = entry;
  const response = completionFromRaw(raw);
  if (!response || response.finishReason !== "stop") return undefined;
  JSON.parse(response.text);
  return { ...rest, response };
}
