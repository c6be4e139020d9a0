import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProviderSet } from "../../src/engine/context.ts";
import { formatDiff } from "../../src/cli/diff.ts";
import { formatVersions } from "../../src/cli/versions.ts";
import { diffRuns } from "../../src/inspect/diff.ts";
import type { RunSummary } from "../../src/inspect/summary.ts";
import { stageVersions } from "../../src/inspect/versions.ts";
import { costOf, createProvider } from "../../src/providers/index.ts";
import { runPipeline } from "../../src/runners/local/index.ts";
import { memoryDatabase } from "../../src/testing/databases.ts";
import { startSimulator, type Simulator } from "../../src/sim/index.ts";
import { openDatabase } from "../../src/store/index.ts";
import { cliEnv, lastJson, tempDataDir } from "../e2e/cli.ts";
import { demoSlice } from "../e2e/data.ts";
import { activeData, demo, EXTRACT_SYSTEM_V2, sluice, variant, stageRows, targetRows, writeDemoVariant, type StageRow, type TargetRow } from "./helpers.ts";

/**
 * The demo, through the CLI as a user runs it, against the simulator
 * over HTTP: run the demo pipeline, change the extract prompt, rerun extract.
 */
let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
});
afterAll(async () => {
  await sim?.close();
});

async function inStore<T>(dataDir: string, fn: (db: Awaited<ReturnType<typeof openDatabase>>) => Promise<T>): Promise<T> {
  // Embedded PGlite on disk has one owner at a time: open, read, close before the next CLI call.
  const db = await openDatabase({ dataDir });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

async function cli(args: string[], env: NodeJS.ProcessEnv) {
  const result = await sluice(args, env);
  expect(result.code, `sluice ${args.join(" ")} failed:\n${result.stderr}`).toBe(0);
  return result;
}

const stage = (s: RunSummary, id: string) => s.stages.find((x) => x.id === id)!;

describe("sluice rerun on the demo pipeline after an extract prompt change", () => {
  it("calls the provider once per item reaching extract, none for filter and classify, and ends where a from-scratch run ends", { timeout: 180_000 }, async () => {
    const input = demoSlice(200);
    const dir = tempDataDir();
    const env = cliEnv({ SLUICE_DATA_DIR: dir, OPENAI_BASE_URL: sim.openaiBaseURL, ANTHROPIC_BASE_URL: sim.anthropicBaseURL });

    const base = lastJson<RunSummary>((await cli(["run", "ticket-triage", "--input", input, "--json"], env)).stdout);
    const before = await inStore(dir, async (db) => ({ extract: await stageRows(db, base.runId, "extract"), target: await targetRows(db) }));
    const reached = [...before.extract.values()].filter((r) => r.status !== "gated_out").length;
    expect(reached).toBeGreaterThan(50);

    const changedPipeline = writeDemoVariant("extract", { prompt: { system: EXTRACT_SYSTEM_V2 } });
    sim.reset();
    const rerunOut = await cli(["rerun", changedPipeline, "--stage", "extract", "--json"], env);
    const rerun = lastJson<RunSummary & { rerun: { baseRunId: string } }>(rerunOut.stdout);
    const stats = sim.stats();

    // Provider calls: exactly the items that reach extract, all on extract's model; none for classify.
    expect(rerun.rerun.baseRunId).toBe(base.runId);
    expect(stats.calls).toBe(reached);
    expect(stats.callsByModel).toEqual({ "gpt-4o": reached });
    expect(stage(rerun, "extract")).toMatchObject({ processed: reached, reused: 0, providerCalls: reached });
    for (const id of ["filter", "classify"]) {
      expect(stage(rerun, id).providerCalls).toBe(0);
      expect(stage(rerun, id).reused).toBe(stage(rerun, id).processed);
    }
    expect(rerun.items).toEqual(base.items);

    const after = await inStore(dir, async (db) => ({
      extract: await stageRows(db, rerun.runId, "extract"),
      validate: await stageRows(db, rerun.runId, "validate"),
      commit: await stageRows(db, rerun.runId, "commit"),
      target: await targetRows(db),
      diff: await diffRuns(db, base.runId, rerun.runId),
      versions: await stageVersions(db, "ticket-triage", { stage: "extract", pipeline: variant(demo, "extract", { prompt: { system: EXTRACT_SYSTEM_V2 } }) }),
    }));
    const changed = new Set([...after.extract].filter(([id, r]) => r.outputHash !== before.extract.get(id)!.outputHash).map(([id]) => id));
    expect(changed.size).toBeGreaterThan(0);
    expect(changed.size).toBeLessThan(reached);

    // validate and commit recompute only where extract's output changed; the rest is reused.
    const recomputed = (rows: Map<string, StageRow>) => new Set([...rows].filter(([, r]) => !r.reused).map(([id]) => id));
    expect(recomputed(after.validate)).toEqual(new Set([...after.validate.keys()].filter((id) => changed.has(id))));
    expect(stage(rerun, "validate").reused).toBe(after.validate.size - [...after.validate.keys()].filter((id) => changed.has(id)).length);
    expect([...recomputed(after.commit)].every((id) => changed.has(id))).toBe(true);

    // The target: rows of changed items were rewritten by the rerun; every other row is untouched.
    const rewritten = (rows: Map<string, TargetRow>) => new Set([...rows].filter(([k, r]) => r.committedAt !== before.target.get(k)?.committedAt).map(([k]) => k));
    const rewrittenKeys = rewritten(after.target);
    expect(rewrittenKeys.size).toBeGreaterThan(0);
    expect([...rewrittenKeys].every((k) => changed.has(k) && after.target.get(k)!.runId === rerun.runId)).toBe(true);
    expect(rewrittenKeys).toEqual(new Set([...after.commit].filter(([id, r]) => r.status === "committed" && changed.has(id)).map(([id]) => id)));

    // diff and versions, as printed, agree with what the store says.
    const { diff, versions } = after;
    const diffText = formatDiff(diff);
    const diffStage = (id: string) => diff.stages.find((s) => s.id === id)!;
    expect(diffStage("extract").outputChanged).toBe(changed.size);
    expect(diffStage("classify").outputChanged).toBe(0);
    expect(diffStage("commit").outputChanged).toBe(rewrittenKeys.size);
    expect(diffStage("extract").labels?.find((l) => l.field === "severity")?.compared).toBe(reached);
    expect(diffText).toMatch(new RegExp(`extract \\(extract\\)\\s+${stage(base, "extract").version} → ${stage(rerun, "extract").version}\\s+${diffStage("extract").items}\\s+${changed.size}\\s+0\\s+0`));

    const versionsText = formatVersions(versions);
    expect(versions.map((v) => [v.version, v.current])).toEqual([
      [stage(base, "extract").version, false],
      [stage(rerun, "extract").version, true],
    ]);
    const latest = versions[1]!;
    expect(latest.changes.map((c) => c.part)).toEqual(["prompt.system"]);
    expect(latest.items).toBe(reached);
    expect(latest.firstRunId).toBe(rerun.runId);
    expect(versionsText).toContain(`* ${stage(rerun, "extract").version}  first ran`);
    expect(versionsText).toContain(`prompt.system "Extract the fields of a support ticket.`);

    // The changed pipeline from scratch, in an empty store, with the same simulator: the same committed rows.
    const t = await memoryDatabase();
    try {
      const providers: ProviderSet = { defaultProvider: "openai", get: () => createProvider({ provider: "openai", baseURL: sim.openaiBaseURL, env: {} }), cost: costOf };
      await runPipeline({ db: t.db, pipeline: variant(demo, "extract", { prompt: { system: EXTRACT_SYSTEM_V2 } }), providers }, input);
      const fresh = await targetRows(t.db);
      expect(activeData(after.target)).toEqual(activeData(fresh));
      expect(activeData(after.target)).not.toEqual(activeData(before.target));
    } finally {
      await t.drop();
    }
  });
});
