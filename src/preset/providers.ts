import type { ProviderSet } from "../engine/context.ts";
import type { Provider, Usage } from "../providers/types.ts";
import { createInProcessProvider } from "../testing/inprocess-provider.ts";

export interface ProviderPreset {
  providers: ProviderSet;
  /** What the user should be told about where LLM calls go. */
  notice: string;
  close(): Promise<void>;
}

/**
 * Wire providers for a CLI run. `SLUICE_PROVIDER=inprocess` answers every LLM
 * stage in-process from the deterministic responder (no HTTP at all).
 */
export async function createProviders(env: NodeJS.ProcessEnv = process.env): Promise<ProviderPreset> {
  const inprocess = createInProcessProvider({ latencyMs: Number(env.SLUICE_INPROCESS_LATENCY_MS) || 0 });
  const byName = new Map<string, Provider>([["inprocess", inprocess]]);
  return {
    providers: {
      defaultProvider: "inprocess",
      get(name) {
        const provider = byName.get(name) ?? inprocess;
        return provider;
      },
      cost: (_model: string, _usage: Usage) => 0,
    },
    notice: `LLM stages answered in-process by the deterministic responder (${env.SLUICE_PROVIDER ?? "default"})`,
    close: async () => {},
  };
}
