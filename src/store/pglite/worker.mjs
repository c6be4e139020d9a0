// The embedded database's thread: PGlite runs here, off the thread that runs
// the engine, so the engine's work and the database's overlap on two cores as
// they do with a Postgres server. `client.ts` is the other end; see it for the
// protocol. Plain JavaScript so that the sources (under tsx or vitest) and the
// build (copied into dist/ by scripts/build.mjs) start the same file.
import { parentPort, workerData } from "node:worker_threads";

const { PGlite, types } = await import(workerData.pglite);

// What drizzle-orm's PGlite driver asks of every query (its parsers cannot
// cross threads): dates, times, intervals and arrays of them stay text.
const asText = (value) => value;
const parsers = Object.fromEntries(
  [types.TIMESTAMP, types.TIMESTAMPTZ, types.INTERVAL, types.DATE, 1231, 1115, 1185, 1187, 1182].map((oid) => [oid, asText]),
);

/** An error as plain data: its message and Postgres' fields (code, detail, constraint, ...). */
function plain(err) {
  const out = { name: err?.name ?? "Error", message: err?.message ?? String(err), stack: err?.stack };
  if (err && typeof err === "object") {
    for (const [key, value] of Object.entries(err)) {
      if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") out[key] = value;
    }
  }
  return out;
}

class Rollback extends Error {}

let pg;
/** Open transactions by the number the other thread gave them: the PGlite transaction, and how to end it. */
const open = new Map();

function reply(id, result) {
  parentPort.postMessage({ id, result });
}
function fail(id, err) {
  parentPort.postMessage({ id, error: plain(err) });
}

async function handle(message) {
  const { id, op } = message;
  try {
    switch (op) {
      case "open": {
        const options = { startParams: workerData.startParams };
        // A copy of a database (`dump`) starts without initdb. In memory, PGlite
        // takes its options as its first argument.
        if (workerData.load) options.loadDataDir = new Blob([workerData.load]);
        pg = workerData.dataDir === undefined ? new PGlite(options) : new PGlite(workerData.dataDir, options);
        await pg.waitReady;
        return reply(id, null);
      }
      case "dump": {
        const bytes = new Uint8Array(await (await pg.dumpDataDir("none")).arrayBuffer());
        parentPort.postMessage({ id, result: bytes }, [bytes.buffer]);
        return;
      }
      case "query": {
        const on = message.tx === undefined ? pg : open.get(message.tx)?.tx;
        if (!on) throw new Error(`transaction ${message.tx} is not open`);
        const { rows, affectedRows, fields } = await on.query(message.sql, message.params, { rowMode: message.rowMode, parsers });
        return reply(id, { rows, affectedRows, fields });
      }
      case "begin": {
        // PGlite's own transaction: it holds the database's lock, so statements
        // outside it wait until it ends, as on one connection.
        const entry = {};
        entry.done = new Promise((resolve, reject) => Object.assign(entry, { resolve, reject }));
        let begun = false;
        entry.finished = pg.transaction(async (tx) => {
          entry.tx = tx;
          open.set(message.tx, entry);
          begun = true;
          reply(id, null);
          await entry.done;
        });
        entry.finished.catch((err) => {
          if (!begun) fail(id, err);
        });
        return;
      }
      case "end": {
        const entry = open.get(message.tx);
        if (!entry) throw new Error(`transaction ${message.tx} is not open`);
        if (message.commit) entry.resolve();
        else entry.reject(new Rollback());
        try {
          await entry.finished;
        } catch (err) {
          if (!(err instanceof Rollback)) throw err;
        } finally {
          open.delete(message.tx);
        }
        return reply(id, null);
      }
      case "close": {
        await pg?.close();
        reply(id, null);
        parentPort.close();
        return;
      }
      default:
        throw new Error(`unknown operation ${op}`);
    }
  } catch (err) {
    fail(id, err);
  }
}

parentPort.on("message", (message) => void handle(message));
