/**
 * A project's defaults for the CLI, in `sluice.config.ts` at the project
 * root (optional). Each setting stands for an environment variable, and an
 * environment variable that is set (in the shell or in `.env`) wins over it.
 * Keys stay in the environment: the config has no place for them.
 */
export interface SluiceConfig {
  store?: {
    /** Postgres URL (`DATABASE_URL`); without one, embedded PGlite. */
    url?: string;
    /** Where embedded PGlite keeps its files (`SLUICE_DATA_DIR`, default `.sluice/pglite`). */
    dataDir?: string;
  };
  /** Model calls in flight per stage (`SLUICE_CONCURRENCY`). */
  concurrency?: number;
  /** Items per chunk (`SLUICE_CHUNK_SIZE`). */
  chunkSize?: number;
  /** Attempts per item before it is dead-lettered (`SLUICE_MAX_ATTEMPTS`). */
  maxAttempts?: number;
  /** Default `--budget` of `run`, `resume` and `rerun`, in USD (`SLUICE_BUDGET`). */
  budgetUsd?: number;
  simulator?: {
    /** Simulator config (JSON: limits, latency, faults) used when no provider key is set (`SLUICE_SIM_CONFIG`). */
    config?: string;
    /** Answer every LLM stage in-process, without HTTP (`SLUICE_PROVIDER=inprocess`). */
    inProcess?: boolean;
    /** Added latency of in-process answers, in ms (`SLUICE_INPROCESS_LATENCY_MS`). */
    inProcessLatencyMs?: number;
  };
}

/**
 * Type the project config; returns it unchanged.
 *
 * @example
 * // sluice.config.ts
 * import { defineConfig } from "sluice/core";
 * export default defineConfig({ concurrency: 32, budgetUsd: 5, store: { dataDir: ".sluice/pglite" } });
 */
export function defineConfig(config: SluiceConfig): SluiceConfig {
  return config;
}
