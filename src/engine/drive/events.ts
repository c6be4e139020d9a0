import type { StageCounts } from "../../store/work.ts";
import type { RunRow } from "../../store/runs.ts";
import type { StagePlan } from "../context.ts";

/** What the engine reports while it drives a run; the CLI turns these into progress bars or lines. */
export interface RunEvents {
  runStarted?(run: RunRow, continued: boolean): void;
  loaded?(rowsRead: number): void;
  stageStarted?(stage: StagePlan, counts: StageCounts): void;
  /**
   * `done` of `total` items that reached the stage are settled. `atMost`:
   * for a later stage of a segment, while earlier stages still decide
   * (gates, failures), how many items may yet reach it in all; it only goes
   * down, and equals `total` once they have decided. Absent when `total` is
   * known from the start.
   */
  progress?(stage: StagePlan, done: number, total: number, atMost?: number): void;
  stageFinished?(stage: StagePlan, counts: StageCounts): void;
}
