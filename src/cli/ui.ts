import { Command } from "commander";
import { startConsole, type RunningConsole } from "../ui/server.ts";
import { CliError, openStore } from "./common.ts";

/**
 * `sluice ui [--port N] [--allow-writes]`: the web console over the store the
 * CLI uses, on 127.0.0.1, until Ctrl-C. Resolves once it listens; `closed`
 * settles when it has stopped and the store is closed.
 */
export async function uiCli(options: { port?: number; allowWrites?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<RunningConsole & { closed: Promise<void> }> {
  const db = await openStore(options.env);
  let ui: RunningConsole;
  try {
    // Review decisions made in the console are checked against the run's pipeline, as the CLI's are.
    const { runPipelineDef } = await import("./review.ts");
    ui = await startConsole({ db, port: options.port ?? 4873, allowWrites: options.allowWrites, pipelineOf: runPipelineDef });
  } catch (err) {
    await db.close();
    const code = (err as NodeJS.ErrnoException).code;
    throw code === "EADDRINUSE" ? new CliError(`port ${options.port} is in use: pick another with --port`) : err;
  }
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  process.stderr.write(`store: ${db.description}\nsluice ui on ${ui.url} (${options.allowWrites ? "writes allowed" : "read-only"}); Ctrl-C to stop\n`);
  const closed = stopped.then(async () => {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    await ui.close();
    await db.close();
  });
  return { ...ui, close: async () => (stop(), closed), closed };
}

export function uiCommand(): Command {
  return new Command("ui")
    .option("-p, --port <n>", "port to listen on (0: any free port)", "4873")
    .option("--allow-writes", "allow actions that change the store (requeueing dead letters)")
    .action(async (opts: { port: string; allowWrites?: boolean }) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(`--port must be a port number, got "${opts.port}"`);
      const ui = await uiCli({ port, allowWrites: opts.allowWrites });
      await ui.closed;
    });
}
