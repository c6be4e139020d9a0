import type { Command } from "commander";

/**
 * Every command of the CLI: its name, what it does (the top help lists these
 * without loading any command), and how to load it. A command's module, and
 * what it imports, is loaded only when that command runs, so `sluice status`
 * never pays for the engine, the report renderer or the console.
 */
export interface CommandEntry {
  name: string;
  description: string;
  load: () => Promise<Command>;
  /** The command uses none of `sluice.config.ts`'s settings (store, engine, budget, simulator): a broken config does not stop it. */
  configFree?: boolean;
  /**
   * The command reads or writes some rows and exits; it runs no pipeline and
   * serves nothing. Embedded PGlite then compiles with V8's baseline
   * WebAssembly compiler only (see `baselineWebAssemblyOnly` in `common.ts`).
   */
  brief?: boolean;
}

export const COMMANDS: readonly CommandEntry[] = [
  { name: "run", description: "run a pipeline over an input file (continues an unfinished run of the same input)", load: async () => (await import("./run.ts")).runCommand() },
  { name: "ls", description: "list the pipelines in pipelines/: their stages, versions, models and targets", load: async () => (await import("./ls.ts")).lsCommand(), configFree: true },
  { name: "graph", description: "print a pipeline's stages as a graph of what each reads (text, or Mermaid for docs)", load: async () => (await import("./graph.ts")).graphCommand(), configFree: true },
  { name: "resume", description: "continue a run that was interrupted (or join a running one from another process)", load: async () => (await import("./resume.ts")).resumeCommand() },
  { name: "rerun", description: "rerun one stage after a change: a new run over the base run's items that pays only for what changed", load: async () => (await import("./rerun.ts")).rerunCommand() },
  { name: "status", description: "list recent runs, or show one run's per-stage status and cost", load: async () => (await import("./status.ts")).statusCommand(), brief: true },
  { name: "versions", description: "list each stage version seen: what changed, when it first ran, how many items it produced", load: async () => (await import("./versions.ts")).versionsCommand(), brief: true },
  { name: "diff", description: "per stage, how many items changed output, gate result or state between two runs", load: async () => (await import("./diff.ts")).diffCommand(), brief: true },
  { name: "compare", description: "run a stage's current definition on a reproducible sample of the last run's items, commit nothing, and report agreement and cost", load: async () => (await import("./compare.ts")).compareCommand(), brief: true },
  { name: "quarantine", description: "list the input rows a run quarantined, with line numbers and reasons", load: async () => (await import("./quarantine.ts")).quarantineCommand(), brief: true },
  { name: "dlq", description: "list a run's dead-lettered items with error class and message; `dlq retry <runId>` requeues them", load: async () => (await import("./dlq.ts")).dlqCommand(), brief: true },
  { name: "review", description: "list, inspect and decide the items a run sent to review (approve, reject, edit)", load: async () => (await import("./review.ts")).reviewCommand(), brief: true },
  { name: "commit", description: "commit a run's reviewed items: approved and edited ones are written to the target, rejected ones end `rejected`", load: async () => (await import("./commit.ts")).commitCommand(), brief: true },
  { name: "revert", description: "restore every target row a run changed to what it was before the run (recorded as a run of its own)", load: async () => (await import("./commit.ts")).revertCommand(), brief: true },
  { name: "history", description: "every write to one row of a pipeline's target: run, operation, and what changed", load: async () => (await import("./commit.ts")).historyCommand(), brief: true },
  { name: "labels", description: "the labels people gave in review, as a labelled set", load: async () => (await import("./labels.ts")).labelsCommand(), brief: true },
  { name: "report", description: "write a run's report (funnel, cost, savings, tokens, time, failures) as one self-contained HTML file", load: async () => (await import("./report.ts")).reportCommand(), brief: true },
  { name: "schedule", description: "Trigger.dev schedules and `after` links of the pipelines in pipelines/", load: async () => (await import("./schedule.ts")).scheduleCommand() },
  { name: "sim", description: "serve the OpenAI/Anthropic provider simulator on loopback until interrupted", load: async () => (await import("./sim.ts")).simCommand() },
  { name: "ui", description: "a local web console on 127.0.0.1: runs, live run reports, items, dead letters, stage versions", load: async () => (await import("./ui.ts")).uiCommand() },
  { name: "estimate", description: "estimate what a run over an input would cost (a range), from the store's history; pays nothing unless --sample", load: async () => (await import("./estimate.ts")).estimateCommand(), brief: true },
  { name: "cost", description: "what was paid, by pipeline, stage, run, day or model, with batch discount and reuse and cache savings; or one item's cost", load: async () => (await import("./cost.ts")).costCommand(), brief: true },
  { name: "drift", description: "how each stage behaved across the last runs (labels, gate, failure and review rates, tokens and cost per item), with changes beyond the thresholds flagged", load: async () => (await import("./drift.ts")).driftCommand(), brief: true },
  { name: "trigger", description: "start a pipeline now: a table, query or glob source reads what is new since its last finished run", load: async () => (await import("./trigger.ts")).triggerCommand() },
  { name: "watch", description: "run pipelines' schedules and sensors (schedule, after, onNewRows, onNewFiles) until stopped", load: async () => (await import("./watch.ts")).watchCommand() },
  { name: "table", description: "tables that pipelines read from (table sources)", load: async () => (await import("./table.ts")).tableCommand() },
];
