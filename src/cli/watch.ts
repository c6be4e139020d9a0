import { setMaxListeners } from "node:events";
import { Command } from "commander";
import { createProviders } from "../preset/providers.ts";
import { watchPipelines, watchedPipelines, type WatchEvent } from "../sensors/index.ts";
import { CliError, loadPipeline, openStore, printJson } from "./common.ts";
import { createCliLogger } from "./logger.ts";
import { loadAllPipelines } from "./schedule.ts";
import { engineOptionsFromEnv, incrementsDirFor } from "./session.ts";
import { formatIncrement } from "./trigger.ts";

/** `--poll 30s`, `2m`, `500ms` or seconds as a bare number. */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new CliError(`--poll is a duration such as 30s, 2m or 500ms, got "${value}"`);
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"];
  if (ms < 100) throw new CliError(`--poll must be at least 100ms, got "${value}"`);
  return ms;
}

function describe(event: WatchEvent): string | undefined {
  switch (event.kind) {
    case "watching":
      return `watching ${event.pipeline}: ${event.sensors.join(", ")}`;
    case "started":
      return `${event.pipeline}: starting (${event.because})`;
    case "finished":
      return formatIncrement(event.result);
    case "error":
      return `${event.pipeline}: ${event.message}`;
    case "polled":
      return undefined;
  }
}

/**
 * `sluice watch`: run the schedules and sensors of the pipelines in
 * `pipelines/` (or those named) until Ctrl-C. Each event is a line on stdout
 * (`--json`: one JSON object per line).
 */
export async function watchCli(options: { pipelines: string[]; pollMs: number; json?: boolean; env?: NodeJS.ProcessEnv }): Promise<void> {
  const env = options.env ?? process.env;
  const all = options.pipelines.length ? await Promise.all(options.pipelines.map((p) => loadPipeline(p))) : await loadAllPipelines(process.cwd());
  let watched;
  try {
    watched = watchedPipelines(all);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  if (watched.length === 0) throw new CliError(`none of ${all.map((p) => p.id).join(", ")} declares schedule, after, onNewRows or onNewFiles: nothing to watch`);
  const db = await openStore(env);
  const preset = await createProviders(env);
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  const stop = () => controller.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    process.stderr.write(`${preset.notice}\nstore: ${db.description}\n`);
    await watchPipelines({
      db,
      pipelines: watched,
      providers: preset.providers,
      pollMs: options.pollMs,
      signal: controller.signal,
      logger: createCliLogger(env),
      options: engineOptionsFromEnv(env),
      snapshotDir: incrementsDirFor(env),
      onEvent: (event) => {
        if (event.kind === "polled") return;
        if (options.json) printJson(event);
        else process.stdout.write(`${describe(event)}\n`);
      },
    });
    process.stderr.write("sluice: stopped watching\n");
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await preset.close();
    await db.close();
  }
}

export function watchCommand(): Command {
  return new Command("watch")
    .argument("[pipelines...]", "pipeline ids or files (default: every pipeline in pipelines/ that declares one)")
    .option("--poll <duration>", "how often sensors are polled: 30s, 2m, 500ms", "30s")
    .option("--json", "print each event as one JSON object per line")
    .action(async (pipelines: string[], opts: { poll: string; json?: boolean }) => {
      await watchCli({ pipelines, pollMs: parseDuration(opts.poll), json: opts.json });
    });
}
