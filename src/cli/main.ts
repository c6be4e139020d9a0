import { Command, CommanderError } from "commander";
import { config as loadEnv } from "dotenv";
import { SluiceError } from "../core/errors.ts";
import { CliError } from "./common.ts";
import { commitCommand, historyCommand, revertCommand } from "./commit.ts";
import { compareCommand } from "./compare.ts";
import { costCommand } from "./cost.ts";
import { diffCommand } from "./diff.ts";
import { dlqCommand } from "./dlq.ts";
import { driftCommand } from "./drift.ts";
import { estimateCommand } from "./estimate.ts";
import { labelsCommand } from "./labels.ts";
import { lsCommand } from "./ls.ts";
import { quarantineCommand } from "./quarantine.ts";
import { reportCommand } from "./report.ts";
import { rerunCommand } from "./rerun.ts";
import { reviewCommand } from "./review.ts";
import { resumeCommand } from "./resume.ts";
import { runCommand } from "./run.ts";
import { scheduleCommand } from "./schedule.ts";
import { simCommand } from "./sim.ts";
import { statusCommand } from "./status.ts";
import { tableCommand } from "./table.ts";
import { triggerCommand } from "./trigger.ts";
import { uiCommand } from "./ui.ts";
import { versionsCommand } from "./versions.ts";
import { watchCommand } from "./watch.ts";

export function buildProgram(): Command {
  const program = new Command("sluice")
    .description("staged, gated, versioned batch LLM pipelines")
    .version("0.1.0")
    .showHelpAfterError()
    .exitOverride();
  for (const command of [
    runCommand(),
    lsCommand(),
    resumeCommand(),
    rerunCommand(),
    statusCommand(),
    versionsCommand(),
    diffCommand(),
    compareCommand(),
    quarantineCommand(),
    dlqCommand(),
    reviewCommand(),
    commitCommand(),
    revertCommand(),
    historyCommand(),
    labelsCommand(),
    reportCommand(),
    scheduleCommand(),
    simCommand(),
    uiCommand(),
    estimateCommand(),
    costCommand(),
    driftCommand(),
    triggerCommand(),
    watchCommand(),
    tableCommand(),
  ]) {
    program.addCommand(command.exitOverride());
  }
  return program;
}

/**
 * CLI entry point. Errors a user can act on print as one line,
 * `sluice: <reason>`, with exit status 1; a finished run exits 0 even when
 * some items were dead-lettered.
 */
export async function main(argv: string[]): Promise<void> {
  try {
    // A .env in the working directory, as the Trigger.dev CLI reads it; variables already set win.
    loadEnv({ quiet: true });
    const program = buildProgram();
    // An unknown command is an error even with --help (which would otherwise print the top help and exit 0).
    const first = argv[2];
    if (first && !first.startsWith("-") && first !== "help" && !program.commands.some((c) => c.name() === first || c.aliases().includes(first))) {
      throw new CliError(`unknown command "${first}" (commands: ${program.commands.map((c) => c.name()).join(", ")})`);
    }
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`sluice: ${message.split("\n")[0]}\n`);
    if (!(err instanceof SluiceError) && process.env.SLUICE_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    process.exitCode = 1;
  }
}
