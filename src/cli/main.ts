import { Command, CommanderError } from "commander";
import { SluiceError } from "../core/errors.ts";
import { commitCommand, historyCommand, revertCommand } from "./commit.ts";
import { compareCommand } from "./compare.ts";
import { costCommand } from "./cost.ts";
import { diffCommand } from "./diff.ts";
import { dlqCommand } from "./dlq.ts";
import { driftCommand } from "./drift.ts";
import { estimateCommand } from "./estimate.ts";
import { labelsCommand } from "./labels.ts";
import { quarantineCommand } from "./quarantine.ts";
import { reportCommand } from "./report.ts";
import { rerunCommand } from "./rerun.ts";
import { reviewCommand } from "./review.ts";
import { resumeCommand } from "./resume.ts";
import { runCommand } from "./run.ts";
import { scheduleCommand } from "./schedule.ts";
import { simCommand } from "./sim.ts";
import { statusCommand } from "./status.ts";
import { uiCommand } from "./ui.ts";
import { versionsCommand } from "./versions.ts";

export function buildProgram(): Command {
  const program = new Command("sluice")
    .description("staged, gated, versioned batch LLM pipelines")
    .version("0.1.0")
    .showHelpAfterError()
    .exitOverride();
  for (const command of [
    runCommand(),
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
    await buildProgram().parseAsync(argv);
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
