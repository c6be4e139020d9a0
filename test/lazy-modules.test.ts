import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The tokenizer (about 70 MB resident) and each vendor SDK (12-23 MB) load when
 * they are first needed, not when sluice's modules are imported: checked in a
 * fresh Node process that records every module it loads.
 */

const root = join(import.meta.dirname, "..");
const RECORD = join(import.meta.dirname, "fixtures", "record-imports.mjs");

/** Runs `body` after importing the CLI, the engine and the provider setup; returns the modules loaded. */
function loaded(body: string): { esm: string[]; cjs: string[] } {
  const script = `
    import { createRequire } from "node:module";
    await import("./src/cli/main.ts");
    await import("./src/engine/index.ts");
    const { createProvider } = await import("./src/providers/index.ts");
    const { countTokens } = await import("./src/core/tokens.ts");
    ${body}
    console.log("cjs " + JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));
  `;
  const dir = mkdtempSync(join(tmpdir(), "sluice-lazy-modules-"));
  try {
    const record = join(dir, "imports.txt");
    const out = spawnSync(process.execPath, ["--import", RECORD, "--import", "tsx", "--input-type=module", "-e", script], {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, OPENAI_API_KEY: "", ANTHROPIC_API_KEY: "", SLUICE_IMPORTS_OUT: record },
    });
    expect(out.status, out.stderr).toBe(0);
    const esm = readFileSync(record, "utf8").split("\n");
    const cjs = JSON.parse(out.stdout.split("\n").find((l) => l.startsWith("cjs "))!.slice(4)) as string[];
    return { esm, cjs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const all = (m: { esm: string[]; cjs: string[] }) => [...m.esm, ...m.cjs];
const tokenizer = (p: string) => p.includes("/node_modules/gpt-tokenizer/");
const openaiSdk = (p: string) => p.includes("/node_modules/openai/");
const anthropicSdk = (p: string) => p.includes("/node_modules/@anthropic-ai/sdk/");

describe("modules loaded on first use", () => {
  it("loads neither the tokenizer nor an SDK when sluice is imported and a provider created", () => {
    const m = loaded(`createProvider({ provider: "openai", baseURL: "http://127.0.0.1:9/v1" });`);
    expect(m.esm.some((p) => p.includes("/src/engine/index.ts"))).toBe(true);
    expect(all(m).filter(tokenizer)).toEqual([]);
    expect(all(m).filter(openaiSdk)).toEqual([]);
    expect(all(m).filter(anthropicSdk)).toEqual([]);
  }, 120_000);

  it("loads the tokenizer on the first count, and only the SDK of the provider that is used", () => {
    const m = loaded(`
      if (countTokens("Classify: refund please") !== 5) throw new Error("unexpected count");
      const p = createProvider({ provider: "openai", baseURL: "http://127.0.0.1:9/v1", timeoutMs: 2000 });
      await p.batch.poll("batch_1").catch(() => {});
    `);
    expect(all(m).some(tokenizer)).toBe(true);
    expect(all(m).some(openaiSdk)).toBe(true);
    expect(all(m).filter(anthropicSdk)).toEqual([]);
  }, 120_000);
});
