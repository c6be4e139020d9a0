import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { simCli, simCommand } from "./sim.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sluice-sim-cli-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("sluice sim", () => {
  it("starts with a config file and prints both base URLs", async () => {
    const file = join(dir, "sim.json");
    await writeFile(file, JSON.stringify({ limits: { "*": { rpm: 600, tpm: 100_000 } }, latency: { meanMs: 5 } }));
    const lines: string[] = [];
    const sim = await simCli({ port: "0", config: file, seed: "9" }, (l) => lines.push(l));
    try {
      expect(lines.join("\n")).toContain(`OPENAI_BASE_URL=${sim.openaiBaseURL}`);
      expect(lines.join("\n")).toContain(`ANTHROPIC_BASE_URL=${sim.url}`);
      const config = (await (await fetch(`${sim.url}/_sim/config`)).json()) as { seed: number; limits: unknown; latency: { meanMs: number } };
      expect(config.seed).toBe(9);
      expect(config.limits).toEqual({ "*": { rpm: 600, tpm: 100_000 } });
      expect(config.latency.meanMs).toBe(5);
    } finally {
      await sim.close();
    }
  });

  it("refuses a bad port, a missing config and an unknown config key with one-line reasons", async () => {
    await expect(simCli({ port: "http" })).rejects.toThrow(/--port must be a port number/);
    await expect(simCli({ port: "0", config: join(dir, "missing.json") })).rejects.toThrow(/cannot use simulator config/);
    const typo = join(dir, "typo.json");
    await writeFile(typo, JSON.stringify({ fault: { serverError: 0.1 } }));
    await expect(simCli({ port: "0", config: typo })).rejects.toThrow(/unknown simulator config key "fault"/);
  });

  it("runs until SIGINT, then closes", async () => {
    const printed: string[] = [];
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      printed.push(String(chunk));
      return true;
    });
    try {
      const done = simCommand().parseAsync(["--port", "0"], { from: "user" });
      while (!printed.some((l) => l.includes("listening on"))) await new Promise((r) => setTimeout(r, 10));
      const url = /listening on (\S+)/.exec(printed.join(""))![1]!;
      expect((await fetch(`${url}/_sim/health`)).status).toBe(200);
      process.emit("SIGINT");
      await done;
      await expect(fetch(`${url}/_sim/health`)).rejects.toThrow();
    } finally {
      write.mockRestore();
    }
  });
});
