import type { StageCounts } from "../../store/work.ts";
import type { RunRow } from "../../store/runs.ts";
import type { StagePlan } from "../context.ts";

/** What the engine reports while it drives a run; the CLI turns these into progress bars or lines. */
export interface RunEvents {
  runStarted?(run: RunRow, continued: boolean): void;
  loaded?(rowsRead: number): void;
  stageStarted?(stage: StagePlan, counts: StageCounts): void;
  progress?(stage: StagePlan, done: number, total: number): void;
  stageFinished?(stage: StagePlan, counts: StageCounts): void;
}
