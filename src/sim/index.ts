/**
 * The provider simulator: OpenAI and Anthropic wire protocols on loopback, for
 * running sluice (and its tests and benchmarks) with no real API.
 */
export { startSimulator, type Simulator, type SimulatorOptions } from "./server.ts";
export {
  defaultSimConfig,
  loadConfig,
  mergeConfig,
  type BatchConfig,
  type FaultConfig,
  type LatencyConfig,
  type ModelLimits,
  type SimConfig,
  type SimConfigPatch,
} from "./config.ts";
export type { FaultKind, SimStats } from "./stats.ts";
export { requestHash } from "./model.ts";
