/** Helpers for testing your own pipelines: `import { runPipelineForTest } from "sluice/testing"`. */
export { runPipelineForTest, singleProvider, type TestRun } from "./harness.ts";
export { createInProcessProvider } from "../providers/inprocess.ts";
export { freshPostgres, memoryDatabase, testDrivers, type TestDatabase } from "./databases.ts";
