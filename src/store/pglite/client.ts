import { Worker } from "node:worker_threads";
import { SluiceError } from "../../core/errors.ts";

/**
 * PGlite in a worker thread, seen from this thread as the part of a PGlite
 * client drizzle-orm's driver uses: `query` and `transaction`.
 *
 * PGlite runs in the thread that calls it; in the engine's thread, every
 * statement stops the engine for as long as the database works (a chunk's
 * write is tens of milliseconds). In a thread of its own it works while the
 * engine prepares the next chunk, as a Postgres server does in its own
 * process. The protocol, one message each way per operation:
 *
 * - `query {sql, params, rowMode, tx?}`: run one statement (inside transaction
 *   `tx` when given), answered with `{rows, affectedRows, fields}`;
 * - `begin {tx}`: PGlite's own transaction, answered once it has begun: it
 *   holds the database, so statements from outside it wait, as on one
 *   connection; `end {tx, commit}` commits or rolls it back;
 * - `close`; `open` (on start).
 *
 * Errors come back as data (message, Postgres' code, detail, constraint, ...)
 * and are thrown here as errors with the same fields. If the thread dies, every
 * pending and later call fails with why.
 */
export class PGliteThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (value: any) => void; reject: (err: Error) => void }>();
  #next = 0;
  #transactions = 0;
  #dead: Error | undefined;

  private constructor(options: { dataDir?: string; startParams: string[]; load?: Uint8Array }) {
    const workerData = { pglite: import.meta.resolve("@electric-sql/pglite"), ...options };
    // Plain JavaScript beside this file in the sources and in dist/ alike.
    // The thread's objects are a statement's parameters and rows, dead once
    // sent: a young generation of 4 MB instead of V8's default holds them at
    // no CPU cost measured, and the demo's peak stays that of PGlite in this
    // thread (430-440 MB against 420-445; 480-490 MB with the default).
    this.#worker = new Worker(new URL("./worker.mjs", import.meta.url), { workerData, execArgv: [], resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    this.#worker.unref();
    this.#worker.on("message", ({ id, result, error }: { id: number; result?: unknown; error?: Record<string, unknown> }) => {
      const waiter = this.#pending.get(id);
      if (!waiter) return;
      this.#pending.delete(id);
      if (this.#pending.size === 0) this.#worker.unref();
      if (error) waiter.reject(Object.assign(new Error(String(error.message)), error, { stack: `${String(error.stack)}\n    in the embedded database's thread` }));
      else waiter.resolve(result);
    });
    const die = (err: Error) => {
      this.#dead ??= err;
      for (const waiter of this.#pending.values()) waiter.reject(this.#dead);
      this.#pending.clear();
    };
    this.#worker.on("error", (err) => die(new SluiceError(`the embedded database stopped: ${err.message}`, { cause: err })));
    this.#worker.on("exit", (code) => die(new SluiceError(`the embedded database's thread ended (exit code ${code})`)));
  }

  /** Start the thread and open the database in it (`dataDir` undefined: in memory; `load`: a copy made by `dump`). */
  static async open(options: { dataDir?: string; startParams: string[]; load?: Uint8Array }): Promise<PGliteThread> {
    const thread = new PGliteThread(options);
    try {
      await thread.#call({ op: "open" });
    } catch (err) {
      await thread.#worker.terminate();
      throw err;
    }
    return thread;
  }

  #call<T>(message: Record<string, unknown>): Promise<T> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      // Keeps the process alive while an answer is awaited, and only then.
      if (this.#pending.size === 0) this.#worker.ref();
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...message, id });
    });
  }

  query(sql: string, params?: unknown[], options?: QueryOptions): Promise<unknown> {
    return this.#query(undefined, sql, params, options);
  }

  #query(tx: number | undefined, sql: string, params: unknown[] | undefined, options: QueryOptions | undefined): Promise<unknown> {
    checkParsers(options);
    return this.#call({ op: "query", sql, params, rowMode: options?.rowMode, tx });
  }

  async transaction<T>(fn: (tx: { query: PGliteThread["query"] }) => Promise<T>): Promise<T> {
    const tx = this.#transactions++;
    await this.#call({ op: "begin", tx });
    let result: T;
    try {
      result = await fn({ query: (sql, params, options) => this.#query(tx, sql, params, options) });
    } catch (err) {
      await this.#call({ op: "end", tx, commit: false });
      throw err;
    }
    await this.#call({ op: "end", tx, commit: true });
    return result;
  }

  /** The whole database as a tarball, for `open({ load })`: a copy that starts without initdb. */
  dump(): Promise<Uint8Array> {
    return this.#call({ op: "dump" });
  }

  async close(): Promise<void> {
    if (!this.#dead) await this.#call({ op: "close" });
    await this.#worker.terminate();
  }
}

interface QueryOptions {
  rowMode?: "array" | "object";
  parsers?: Record<number, (value: string, typeId: number) => unknown>;
}

/** The type ids whose values the thread keeps as text, as drizzle-orm's PGlite driver asks (`worker.mjs`). */
const TEXT_TYPES = new Set([1114, 1184, 1186, 1082, 1231, 1115, 1185, 1187, 1182]);

/** Parsers cannot cross threads: the thread applies drizzle's; anything else is a mistake to hear of at once. */
function checkParsers(options: QueryOptions | undefined): void {
  for (const key of Object.keys(options?.parsers ?? {})) {
    if (!TEXT_TYPES.has(Number(key))) throw new SluiceError(`the embedded database's thread keeps type ${key} as text only for drizzle-orm's parsers; a parser for it cannot be passed`);
  }
}
