import { readdirSync } from "node:fs";
import { resolve } from "node:path";
import { resourceCatalog } from "@trigger.dev/core/v3";
import { afterAll, describe, expect, test, vi } from "vitest";
import { formatSchedules, listSchedules, scheduleCommand } from "../../src/cli/schedule.ts";
import { tempDir } from "./data.ts";
import { installTaskCatalog } from "./harness.ts";

/** The `trigger/` entry point, `trigger.config.ts`, and `sluice schedule list`. */

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
  test("defines an orchestrator and stage tasks for every pipeline in pipelines/", async () => {
    installTaskCatalog("trigger/sluice.ts");
    const { sluice } = await import("../../trigger/sluice.ts");
    const listing = await listSchedules(process.cwd(), {});
    expect(listing.length).toBe(readdirSync("pipelines").filter((f) => f.endsWith(".ts")).length);
    const registered = new Set(resourceCatalog.listTaskManifests().map((t) => t.id));
    for (const p of listing) {
      expect(sluice.has(p.pipeline)).toBe(true);
      for (const id of [p.tasks.orchestrator, ...p.tasks.stages.map((s) => s.task), ...(p.tasks.schedule ? [p.tasks.schedule] : []), ...(p.tasks.sensor ? [p.tasks.sensor] : [])]) expect(registered.has(id)).toBe(true);
    }
    expect(resourceCatalog.listTaskIdCollisions?.() ?? []).toEqual([]);
  });

  test("trigger.config.ts points the CLI at trigger/ and keeps PGlite out of the bundle", async () => {
    const config = (await import("../../trigger.config.ts")).default;
    expect(config.dirs).toEqual(["./trigger"]);
    expect(config.maxDuration).toBeGreaterThanOrEqual(5);
    expect(config.build?.external).toContain("@electric-sql/pglite");
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
        tasks: { orchestrator: "sluice-follow-up", schedule: null, sensor: null, stages: [
          { stage: "label", task: "sluice-follow-up--label", concurrency: "2 (shared sluice-provider-openai)" },
          { stage: "commit", task: "sluice-follow-up--commit", concurrency: "10" },
        ] },
      },
      {
        pipeline: "nightly", schedule: { cron: "0 2 * * *", timezone: "America/New_York" }, after: null, downstream: ["follow-up"],
        tasks: { orchestrator: "sluice-nightly", schedule: "sluice-nightly--schedule", sensor: null, stages: [
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
    expect(json.pipelines.find((p: { pipeline: string }) => p.pipeline === "crm-enrichment").tasks.sensor).toBe("sluice-crm-enrichment--sensor");
  });
});
