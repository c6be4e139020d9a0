import { readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { resourceCatalog } from "@trigger.dev/core/v3";
import { afterAll, describe, expect, test, vi } from "vitest";
import { formatSchedules, listSchedules, loadAllPipelines, scheduleCommand } from "../../src/cli/schedule.ts";
import { pipelinesPlugin } from "../../src/runners/trigger/bundle.ts";
import { tempDir } from "./data.ts";
import { installTaskCatalog } from "./harness.ts";

/** The `trigger/` entry point (its pipelines found in pipelines/, from source and in a build), `trigger.config.ts`, and `sluice schedule list`. */

const dir = tempDir();
afterAll(() => dir.remove());
const define = resolve("src/core/define.ts");
const pipelineFile = (id: string, extra: string) => `import { definePipeline } from ${JSON.stringify(define)};
export default definePipeline({ id: ${JSON.stringify(id)}, source: { key: "id" }, ${extra}
  stages: [
    { id: "label", kind: "classify", provider: "openai", model: "gpt-4o-mini", prompt: { user: "{{item.text}}" }, output: { name: "L", schema: { type: "object" } } },
    { id: "commit", kind: "commit", target: { table: ${JSON.stringify(`${id.replace(/-/g, "_")}_out`)}, key: "id" }, row: ({ itemId }) => ({ id: itemId }) },
  ] });`;

describe("trigger/ entry point", () => {
  test("trigger/pipelines.ts, run from source, exports the pipelines `sluice ls` finds in pipelines/", async () => {
    const { PIPELINES } = await import("../../trigger/pipelines.ts");
    expect(PIPELINES.map((p) => p.id)).toEqual((await loadAllPipelines(process.cwd())).map((p) => p.id));
  });

  test("a Trigger.dev build bundles every pipeline in pipelines/, imported statically, and defines its tasks", async () => {
    // A project with two pipelines, one test file and a note that are not pipelines.
    const project = tempDir();
    project.file("pipelines/alpha.ts", [pipelineFile("alpha", "")]);
    project.file("pipelines/beta-two.ts", [pipelineFile("beta-two", `schedule: { cron: "0 3 * * *" },`)]);
    project.file("pipelines/alpha.test.ts", ["throw new Error('a test file is no pipeline');"]);
    project.file("pipelines/NOTES.md", ["not code"]);
    // Bundled as the Trigger.dev CLI bundles trigger/sluice.ts, with the extension's plugin; packages stay external
    // (resolved from this repository's node_modules, where the output goes).
    const out = resolve("node_modules/.cache/sluice-test", `entry-${process.pid}-${Date.now()}.mjs`);
    try {
      const built = await build({
        entryPoints: [resolve("trigger/sluice.ts")], outfile: out, bundle: true, format: "esm", platform: "node", target: "node20",
        packages: "external", logLevel: "silent",
        plugins: [pipelinesPlugin({ module: resolve("trigger/pipelines.ts"), pipelinesDir: join(project.path, "pipelines") })],
      });
      expect(built.errors).toEqual([]);
      const text = readFileSync(out, "utf8");
      expect(text).not.toContain("discoverPipelines"); // the folder is not read at run time
      // The pipelines are in the bundle: it loads with the folder gone.
      project.remove();
      installTaskCatalog("trigger/sluice.ts");
      const { sluice } = (await import(pathToFileURL(out).href)) as { sluice: Map<string, unknown> };
      expect([...sluice.keys()]).toEqual(["alpha", "beta-two"]);
      const registered = resourceCatalog.listTaskManifests().map((t) => t.id).sort();
      expect(registered).toEqual(["sluice-alpha", "sluice-alpha--commit", "sluice-alpha--label", "sluice-beta-two", "sluice-beta-two--commit", "sluice-beta-two--label", "sluice-beta-two--schedule"]);
    } finally {
      rmSync(out, { force: true });
      project.remove();
    }
  });

  test("a module in pipelines/ that is no pipeline stops the build, or the bundle's load, with the reason", async () => {
    const project = tempDir();
    const out = resolve("node_modules/.cache/sluice-test", `broken-${process.pid}-${Date.now()}.mjs`);
    const bundle = (dir: string, write = true) =>
      build({
        entryPoints: [resolve("trigger/pipelines.ts")], ...(write ? { outfile: out } : { write: false }), bundle: true, format: "esm", platform: "node", packages: "external", logLevel: "silent",
        plugins: [pipelinesPlugin({ module: resolve("trigger/pipelines.ts"), pipelinesDir: dir })],
      });
    try {
      project.file("pipelines/none.ts", ["export const notAPipeline = 1;"]);
      await expect(bundle(join(project.path, "pipelines"), false)).rejects.toThrow(/No matching export in ".*pipelines\/none.ts" for import "default"/);
      rmSync(join(project.path, "pipelines/none.ts"));
      // A default export the bundler cannot judge is checked when the bundle loads, as `sluice ls` checks it.
      project.file("pipelines/bad.ts", [`export default { id: "Bad Id", source: { key: "id" }, stages: [] };`]);
      await bundle(join(project.path, "pipelines"));
      await expect(import(pathToFileURL(out).href)).rejects.toThrow(/pipeline "Bad Id": id must match/);
      await expect(bundle(join(project.path, "missing"), false)).rejects.toThrow(/no pipelines\/ folder at/);
    } finally {
      rmSync(out, { force: true });
      project.remove();
    }
  });

  test("trigger.config.ts points the CLI at trigger/ and keeps PGlite out of the bundle", async () => {
    const config = (await import("../../trigger.config.ts")).default;
    expect(config.dirs).toEqual(["./trigger"]);
    expect(config.maxDuration).toBeGreaterThanOrEqual(5);
    expect(config.build?.external).toContain("@electric-sql/pglite");
    expect(config.build?.extensions?.map((e) => e.name)).toContain("sluice-pipelines");
  });
});

describe("sluice schedule list", () => {
  test("shows schedules with their timezone, after links and the task ids a deploy registers", async () => {
    dir.file("pipelines/nightly.ts", [pipelineFile("nightly", `schedule: { cron: "0 2 * * *", timezone: "America/New_York" },`)]);
    dir.file("pipelines/follow-up.ts", [pipelineFile("follow-up", `after: "nightly",`)]);
    const listing = await listSchedules(dir.path, { SLUICE_RPM_OPENAI: "480" });
    expect(listing).toEqual([
      {
        pipeline: "follow-up", schedule: null, after: "nightly", downstream: [],
        tasks: { orchestrator: "sluice-follow-up", schedule: null, sensor: null, senses: null, stages: [
          { stage: "label", task: "sluice-follow-up--label", concurrency: "2 (shared sluice-provider-openai)" },
          { stage: "commit", task: "sluice-follow-up--commit", concurrency: "10" },
        ] },
      },
      {
        pipeline: "nightly", schedule: { cron: "0 2 * * *", timezone: "America/New_York" }, after: null, downstream: ["follow-up"],
        tasks: { orchestrator: "sluice-nightly", schedule: "sluice-nightly--schedule", sensor: null, senses: null, stages: [
          { stage: "label", task: "sluice-nightly--label", concurrency: "2 (shared sluice-provider-openai)" },
          { stage: "commit", task: "sluice-nightly--commit", concurrency: "10" },
        ] },
      },
    ]);
    const text = formatSchedules(listing);
    expect(text).toContain(`nightly: cron "0 2 * * *" (America/New_York)`);
    expect(text).toContain("follow-up: after nightly commits");
  });

  test("refuses an `after` that names no pipeline", async () => {
    // Another folder: an imported pipeline module is cached by path.
    const other = tempDir();
    other.file("pipelines/orphan.ts", [pipelineFile("orphan", `after: "nowhere",`)]);
    await expect(listSchedules(other.path, {}).finally(() => other.remove())).rejects.toThrow(/orphan runs after "nowhere", which is not among the pipelines/);
  });

  test("--json prints the listing as the last stdout line", async () => {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => (out.push(String(chunk)), true));
    try {
      await scheduleCommand().parseAsync(["list", "--json"], { from: "user" });
    } finally {
      spy.mockRestore();
    }
    const json = JSON.parse(out.join("").trim().split("\n").at(-1)!);
    expect(json.pipelines.map((p: { pipeline: string }) => p.pipeline)).toContain("ticket-triage");
    expect(json.pipelines.find((p: { pipeline: string }) => p.pipeline === "ticket-triage").tasks.orchestrator).toBe("sluice-ticket-triage");
    expect(json.pipelines.find((p: { pipeline: string }) => p.pipeline === "crm-enrichment").tasks).toMatchObject({ sensor: "sluice-crm-enrichment--sensor", senses: "rows" });
  });
});
