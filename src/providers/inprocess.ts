import { respond } from "../sim/responder.ts";
import type { CompletionRequest, CompletionResult, Provider } from "./types.ts";

/**
 * A provider that answers in-process from the simulator's deterministic
 * responder: no HTTP, no keys, no cost beyond CPU. For unit tests of pipelines
 * and for measuring the engine without a network in the way.
 *
 * @example
 * const provider = createInProcessProvider();
 * const result = await provider.complete(request);
 */
export function createInProcessProvider(options: { name?: string; latencyMs?: number } = {}): Provider & { calls: number } {
  const provider = {
    name: options.name ?? "inprocess",
    calls: 0,
    async complete(request: CompletionRequest): Promise<CompletionResult> {
      provider.calls++;
      if (options.latencyMs) await new Promise((r) => setTimeout(r, options.latencyMs));
      const text = request.messages.map((m) => m.content).join("\n");
      const answer = respond({ system: request.system, text, schema: request.schema.schema });
      return {
        text: answer.json,
        finishReason: "stop",
        usage: { inputTokens: answer.inputTokens, outputTokens: answer.outputTokens },
        model: request.model,
      };
    },
  };
  return provider;
}
