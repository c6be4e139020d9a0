import type { ProviderSet } from "../engine/context.ts";
import { costBreakdown, createProvider, resolveProviderEnv, type VendorName } from "../providers/index.ts";
import type { Provider, Usage } from "../providers/types.ts";
import { loadConfig, startSimulator, type Simulator } from "../sim/index.ts";
import { createInProcessProvider } from "../providers/inprocess.ts";

export interface ProviderPreset {
  providers: ProviderSet;
  /** What the user should be told about where LLM calls go. */
  notice: string;
  /** The simulator this preset started, if any. */
  simulator?: Simulator;
  close(): Promise<void>;
}

/**
 * Wire providers for a CLI run, the zero-config way:
 * - a provider whose API key is set (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`) goes to the real API,
 *   or to `OPENAI_BASE_URL` / `ANTHROPIC_BASE_URL` when those are set, as the SDKs do;
 * - a provider with neither is pointed at sluice's simulator, started in this
 *   process on a free loopback port (with `SLUICE_SIM_CONFIG` as its config), and the notice says so;
 * - `SLUICE_PROVIDER=inprocess` answers every LLM stage in-process, with no HTTP at all.
 * The official SDK clients are used in every case but the last.
 */
export async function createProviders(env: NodeJS.ProcessEnv = process.env): Promise<ProviderPreset> {
  const warned = new Set<string>();
  const cost = (model: string, usage: Usage, mode: "realtime" | "batch") => {
    const c = costBreakdown(model, usage, mode);
    if (!c.priced && !warned.has(model)) {
      warned.add(model);
      process.stderr.write(`sluice: no price for model ${model}; its calls are counted at $0\n`);
    }
    return c.usd;
  };
  const inprocess = createInProcessProvider({ latencyMs: Number(env.SLUICE_INPROCESS_LATENCY_MS) || 0 });

  if (env.SLUICE_PROVIDER === "inprocess") {
    return {
      providers: { defaultProvider: "inprocess", get: () => inprocess, cost, endpointOf: () => "inprocess@responder" },
      notice: "LLM stages answered in-process by the deterministic responder (SLUICE_PROVIDER=inprocess)",
      close: async () => {},
    };
  }

  const resolved = resolveProviderEnv(env);
  let simulator: Simulator | undefined;
  const notes: string[] = [];
  const byName = new Map<string, Provider>([["inprocess", inprocess]]);
  const endpoints = new Map<string, string>([["inprocess", "inprocess@responder"]]);
  for (const name of ["openai", "anthropic"] as VendorName[]) {
    const r = resolved[name];
    if (r.needsSimulator) {
      simulator ??= await startSimulator({ port: 0, config: env.SLUICE_SIM_CONFIG ? await loadConfig(env.SLUICE_SIM_CONFIG) : undefined, requestStats: false });
      const baseURL = name === "openai" ? simulator.openaiBaseURL : simulator.anthropicBaseURL;
      byName.set(name, createProvider({ provider: name, baseURL, env: {} }));
      endpoints.set(name, `${name}@simulator`);
    } else {
      byName.set(name, createProvider({ provider: name, env }));
      endpoints.set(name, r.baseURL ? `${name}@${r.baseURL}` : name);
      notes.push(`${name}: ${r.baseURL ? `the API at ${r.baseURL}` : "the real API (key from the environment)"}`);
    }
  }
  if (simulator) {
    const simulated = (["openai", "anthropic"] as const).filter((n) => resolved[n].needsSimulator);
    notes.unshift(`no ${simulated.map((n) => (n === "openai" ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY")).join(" or ")}: ${simulated.join(" and ")} calls go to the built-in simulator at ${simulator.url} (synthetic answers, simulated costs)`);
  }
  return {
    providers: {
      defaultProvider: "openai",
      get(name) {
        const provider = byName.get(name);
        if (!provider) throw new Error(`unknown provider "${name}" (openai, anthropic or inprocess)`);
        return provider;
      },
      cost,
      endpointOf: (name) => endpoints.get(name) ?? name,
    },
    notice: notes.join("\n"),
    simulator,
    close: async () => {
      for (const p of byName.values()) await p.close?.();
      await simulator?.close();
    },
  };
}
