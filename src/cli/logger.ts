import pino from "pino";
import type { Logger } from "../engine/context.ts";

const LEVELS = ["debug", "info", "warn"] as const;
type Level = (typeof LEVELS)[number];

/**
 * The CLI's logger, on stderr (stdout is kept for results and `--json`).
 * `SLUICE_LOG_FORMAT=json` gives pino's JSON lines for log collectors, with
 * API keys redacted; otherwise plain `sluice [level] message` lines. Level
 * from `SLUICE_LOG_LEVEL` (debug, info, warn; default info).
 */
export function createCliLogger(env: NodeJS.ProcessEnv = process.env, write: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Logger {
  const level: Level = LEVELS.includes(env.SLUICE_LOG_LEVEL as Level) ? (env.SLUICE_LOG_LEVEL as Level) : "info";
  if (env.SLUICE_LOG_FORMAT === "json") {
    const log = pino(
      { level, base: { app: "sluice" }, redact: { paths: ["apiKey", "*.apiKey", "headers.authorization", "headers['x-api-key']"], censor: "[redacted]" } },
      pino.destination(2),
    );
    return {
      debug: (msg, fields) => log.debug(fields ?? {}, msg),
      info: (msg, fields) => log.info(fields ?? {}, msg),
      warn: (msg, fields) => log.warn(fields ?? {}, msg),
    };
  }
  const rank = LEVELS.indexOf(level);
  const line = (at: Level) => (msg: string) => {
    if (LEVELS.indexOf(at) >= rank) write(`sluice [${at}] ${msg}`);
  };
  return { debug: line("debug"), info: line("info"), warn: line("warn") };
}
