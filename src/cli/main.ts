import { Command, CommanderError } from "commander";
import { config as loadEnv } from "dotenv";
import { oneLine, SluiceError } from "../core/errors.ts";
import { COMMANDS, type CommandEntry } from "./commands.ts";
import { baselineWebAssemblyOnly, CliError } from "./common.ts";

/**
 * The program with every command listed; only `load`ed entries are real
 * commands, the others are names and descriptions for the top help.
 */
export function buildProgram(loaded: Map<string, Command> = new Map()): Command {
  const program = new Command("sluice")
    .description("staged, gated, versioned batch LLM pipelines")
    .version("0.1.0")
    .showHelpAfterError()
    .exitOverride();
  for (const entry of COMMANDS) {
    const command = loaded.get(entry.name) ?? new Command(entry.name);
    program.addCommand(command.description(entry.description).exitOverride());
  }
  return program;
}

/** The command a command line names (`sluice <command> ...` or `sluice help <command>`), if any. */
function named(argv: string[]): CommandEntry | "unknown" | undefined {
  const first = argv[2];
  if (!first || first.startsWith("-")) return undefined;
  const name = first === "help" ? argv[3] : first;
  if (name === undefined) return undefined;
  return COMMANDS.find((c) => c.name === name) ?? "unknown";
}

/**
 * CLI entry point. Errors a user can act on print as one line,
 * `sluice: <reason>`, with exit status 1; a finished run exits 0 even when
 * some items were dead-lettered. Only the module of the command being run is
 * loaded, and a project's `sluice.config.ts` only when a command runs.
 */
export async function main(argv: string[]): Promise<void> {
  keepWorkingWhenTheReaderLeaves(process.stdout);
  try {
    const entry = named(argv);
    // An unknown command is an error even with --help (which would otherwise print the top help and exit 0).
    if (entry === "unknown") {
      const name = argv[2] === "help" ? argv[3] : argv[2];
      throw new CliError(`unknown command "${name}" (commands: ${COMMANDS.map((c) => c.name).join(", ")})`);
    }
    const loaded = new Map<string, Command>();
    if (entry?.brief) baselineWebAssemblyOnly();
    if (entry) {
      // Help, and commands that use none of its settings, work whatever the project's config holds.
      const help = argv.slice(2).some((a) => a === "--help" || a === "-h") || argv[2] === "help";
      if (!help) {
        // A .env in the working directory, as the Trigger.dev CLI reads it; variables already set win.
        const unset = START_ONLY.filter((name) => process.env[name] === undefined);
        const { parsed } = loadEnv({ quiet: true });
        const late = unset.filter((name) => parsed?.[name] !== undefined);
        if (late.length) await warnTooLate(late);
        // Then the project's defaults, under both.
        if (!entry.configFree) await (await import("./config.ts")).applyProjectConfig(process.cwd(), process.env);
      }
      loaded.set(entry.name, await entry.load());
    }
    await buildProgram(loaded).parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`sluice: ${oneLine(message)}\n`);
    if (!(err instanceof SluiceError) && process.env.SLUICE_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    process.exitCode = 1;
  }
}

/**
 * Read by glibc or by Node only as a process starts, so a `.env` that sets
 * one sets it too late for this process (README, "Running where memory is
 * tight"): said, rather than left to look like a setting that does nothing.
 */
const START_ONLY = ["MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "NODE_OPTIONS"];

async function warnTooLate(names: string[]): Promise<void> {
  const { createCliLogger } = await import("./logger.ts");
  const [what, it] = names.length === 1 ? [`\`${names[0]}\``, "it"] : [names.map((n) => `\`${n}\``).join(" and "), "them"];
  createCliLogger().warn(`.env sets ${what}, read only as a process starts: too late for this one; set ${it} in the shell instead (README, "Running where memory is tight")`);
}

/**
 * A reader that goes away (`sluice review list | head -3`) ends what is
 * printed, not the command: the work it was doing (a commit applying
 * decisions, a run) goes on to its end, printing nothing more, and the exit
 * status is the work's. Without this, the first write after the reader left
 * threw (EPIPE) and stopped the command where it stood.
 */
function keepWorkingWhenTheReaderLeaves(stream: NodeJS.WriteStream): void {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
    stream.write = (() => true) as typeof stream.write;
  });
}
