import { Command } from "commander";
import { startSimulator, type Simulator } from "../sim/server.ts";
import { loadConfig, type SimConfig } from "../sim/config.ts";
import { CliError } from "./common.ts";

export interface SimCliOptions {
  port?: string;
  host?: string;
  config?: string;
  seed?: string;
}

/**
 * Start the simulator from CLI options and print where it listens. Returns the
 * running simulator; the command keeps it up until SIGINT/SIGTERM.
 *
 * @example
 * const sim = await simCli({ port: "8787" });
 * await sim.close();
 */
export async function simCli(opts: SimCliOptions, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<Simulator> {
  const port = opts.port === undefined ? 8787 : Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(`--port must be a port number, got "${opts.port}"`);
  const seed = opts.seed === undefined ? undefined : Number(opts.seed);
  if (seed !== undefined && !Number.isInteger(seed)) throw new CliError(`--seed must be an integer, got "${opts.seed}"`);
  let config: SimConfig | undefined;
  if (opts.config) {
    try {
      config = await loadConfig(opts.config);
    } catch (err) {
      throw new CliError(`cannot use simulator config ${opts.config}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  let sim: Simulator;
  try {
    sim = await startSimulator({ port, host: opts.host ?? "127.0.0.1", config, seed });
  } catch (err) {
    throw new CliError(`cannot start the simulator on port ${port}: ${(err as Error).message}`);
  }
  out(`sluice simulator listening on ${sim.url}`);
  out(`  OpenAI:    OPENAI_BASE_URL=${sim.openaiBaseURL}`);
  out(`  Anthropic: ANTHROPIC_BASE_URL=${sim.anthropicBaseURL}`);
  out(`  control:   ${sim.url}/_sim/stats  ${sim.url}/_sim/config  ${sim.url}/_sim/reset`);
  return sim;
}

/**
 * `sluice sim [--port N] [--config file]`: serve the provider simulator until interrupted.
 *
 * @example
 * program.addCommand(simCommand());
 * // $ sluice sim --port 8787 --config sim.json
 */
export function simCommand(): Command {
  return new Command("sim")
    .option("--port <n>", "port to listen on (0 picks a free one)", "8787")
    .option("--host <host>", "address to bind", "127.0.0.1")
    .option("--config <file>", "simulator config (JSON): limits, latency, faults, batch behaviour")
    .option("--seed <n>", "seed for the simulator's deterministic choices")
    .action(async (opts: SimCliOptions) => {
      const sim = await simCli(opts);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
          resolve();
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
      });
      await sim.close();
    });
}
