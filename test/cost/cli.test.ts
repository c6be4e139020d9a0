import { describe, expect, it } from "vitest";
import { cliEnv, lastJson, runCli, tempDataDir } from "../e2e/cli.ts";
import { demoSlice } from "../e2e/data.ts";
import { writeDemoVariant } from "../rerun/helpers.ts";
import { CLASSIFY_URGENCY } from "./prompts.ts";

/** `estimate`, `run --dry-run`, `cost` and `drift` as a user runs them. */
describe("the cost commands", () => {
  it("refuse bad arguments in one line, before the store opens", async () => {
    // A database nobody can reach: each refusal must come first.
    const env = cliEnv({ DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" });
    const cases: [string[], string][] = [
      [["estimate", "ticket-triage", "--input", "examples/data/tickets.csv", "--sample", "0"], 'sluice: --sample must be a positive integer, got "0"'],
      [["estimate", "ticket-triage", "--input", "nope.csv"], "sluice: cannot read input nope.csv: no such file"],
      [["estimate", "ticket-triage"], "sluice: pipeline ticket-triage reads a file: give it with --input"],
      [["cost", "--by", "week"], 'sluice: --by must be a list of pipeline, stage, run, day, model; got "week"'],
      [["cost", "--since", "yesterday-ish"], 'sluice: --since must be a date or time (e.g. 2025-06-01), got "yesterday-ish"'],
      [["drift", "ticket-triage", "--last", "1"], 'sluice: --last must be at least 2 to compare runs, got "1"'],
      [["drift", "ticket-triage", "--js", "2"], 'sluice: --js must be a number above 0 and at most 1, got "2"'],
      [["run", "ticket-triage", "--input", "examples/data/tickets.csv", "--deadline", "soon"], 'sluice: --deadline is a duration like 6h, 90m, 1h30m or 45s, got "soon"'],
      [["rerun", "ticket-triage", "--stage", "extract", "--deadline", "0m"], 'sluice: --deadline must be longer than 0, got "0m"'],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args, env);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stderr.trim().split("\n").at(-1), args.join(" ")).toBe(message);
    }
  }, 120_000);

  it("run --dry-run prints the estimate and records nothing", async () => {
    const env = cliEnv({ SLUICE_DATA_DIR: tempDataDir(), SLUICE_PROVIDER: "inprocess" });
    const dry = await runCli(["run", "ticket-triage", "--input", demoSlice(100), "--dry-run", "--json"], env);
    expect(dry.code).toBe(0);
    const est = lastJson(dry.stdout);
    expect(est.pipeline).toBe("ticket-triage");
    expect(est.costUsd.high).toBeGreaterThan(0);
    // A sample as large as the input would pay for all of it: refused.
    const whole = await runCli(["estimate", "ticket-triage", "--input", demoSlice(100), "--sample", "100"], env);
    expect(whole.code).toBe(1);
    expect(whole.stderr.trim().split("\n").at(-1)).toMatch(/^sluice: --sample 100 would run all 100 items of the input \(.*\) and pay for them: sample fewer, or run it with `sluice run`$/);
    expect(lastJson((await runCli(["status", "--json"], env)).stdout)).toEqual([]);
  }, 120_000);

  it("drift --fail-on-drift exits 2 on a changed prompt; cost rolls the runs up", async () => {
    const env = cliEnv({ SLUICE_DATA_DIR: tempDataDir(), SLUICE_PROVIDER: "inprocess" });
    const slice = demoSlice(150);
    for (const pipeline of ["ticket-triage", "ticket-triage", writeDemoVariant("classify", { prompt: { user: CLASSIFY_URGENCY } })]) {
      const run = await runCli(["run", pipeline, "--input", slice, "--fresh", "--json"], env);
      expect(run.code, run.stderr).toBe(0);
    }
    const drift = await runCli(["drift", "ticket-triage", "--last", "3", "--fail-on-drift"], env);
    expect(drift.code).toBe(2);
    expect(drift.stdout).toMatch(/1 change beyond the thresholds:\n {2}! classify: category distribution moved/);
    const calm = await runCli(["drift", "ticket-triage", "--last", "3", "--js", "0.5", "--fail-on-drift", "--json"], env);
    expect(calm.code).toBe(0);
    expect(lastJson(calm.stdout).flags).toEqual([]);

    // Two dimensions group together: one group per stage and model, adding up to what one dimension says.
    // One after the other: an embedded store is opened by one process at a time.
    const cost = await runCli(["cost", "--by", "stage,model", "--json"], env);
    const byStage = await runCli(["cost", "--by", "stage", "--json"], env);
    expect(cost.code).toBe(0);
    const both = lastJson(cost.stdout);
    expect(both.by).toBe("stage,model");
    expect(both.groups.map((g: { key: string; stage: string; model: string }) => [g.key, g.stage, g.model]).sort()).toEqual([
      ["ticket-triage/classify · gpt-4o-mini", "classify", "gpt-4o-mini"],
      ["ticket-triage/extract · gpt-4o", "extract", "gpt-4o"],
    ]);
    expect(both.total.costUsd).toBeCloseTo(lastJson(byStage.stdout).total.costUsd, 8);
  }, 240_000);
});
