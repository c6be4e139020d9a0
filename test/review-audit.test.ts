import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { decide } from "../src/inspect/review.ts";
import { definePipeline, defineStage } from "../src/core/define.ts";
import type { CommitStage } from "../src/core/types.ts";
import { inAuditSample } from "../src/engine/compute.ts";
import { createInProcessProvider } from "../src/providers/inprocess.ts";
import { resumeRun, runPipeline } from "../src/runners/local/index.ts";
import { dumpTarget } from "../src/store/reports.ts";
import { reviewQueue } from "../src/store/reviews.ts";
import { testDrivers, type TestDatabase } from "../src/testing/databases.ts";
import { singleProvider } from "../src/testing/harness.ts";
import mini from "./fixtures/pipelines/mini.ts";

/**
 * A random audit: a commit stage with `audit.sample` sends that share of what
 * it would commit to review first. The same items every run; approved ones are
 * committed (edits included), rejected ones never are.
 */
const commit = mini.stages.at(-1) as CommitStage;
const audited = definePipeline({ ...mini, id: "mini-audit", stages: [...mini.stages.slice(0, -1), defineStage({ ...commit, target: { table: "mini_audit", key: "id" }, audit: { sample: 0.25 } })] });
const items = Array.from({ length: 200 }, (_, i) => ({ id: `a${String(i).padStart(4, "0")}`, text: ["invoice charged twice", "the app crashes", "refund please"][i % 3]! + ` #${i}` }));

function inputFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), "sluice-audit-")), "items.jsonl");
  writeFileSync(file, items.map((i) => JSON.stringify(i)).join("\n"));
  return file;
}

for (const driver of testDrivers()) {
  describe.skipIf(driver.skip)(`an audit sample at commit, on ${driver.name}`, () => {
    let t: TestDatabase;
    afterEach(async () => {
      await t?.drop();
    });

    it("holds back the sampled items until a person decides, then commits what they approved", async () => {
      t = await driver.open();
      const opts = { db: t.db, pipeline: audited, providers: singleProvider(createInProcessProvider()) };
      const first = await runPipeline(opts, inputFile());
      const queue = await reviewQueue(t.db, first.runId);
      const reaching = first.stages.find((s) => s.id === "commit")!.processed;
      // Exactly the items the hash picks, and about a quarter of them.
      const held = queue.map((q) => q.item_id);
      expect(queue.every((q) => q.stage_id === "commit" && /^audit sample: 25%/.test(q.reason ?? ""))).toBe(true);
      expect(held.length).toBeGreaterThan(reaching * 0.1);
      expect(held.length).toBeLessThan(reaching * 0.4);
      expect(held.every((id) => inAuditSample(id, 0.25))).toBe(true);
      expect(first.items.byStatus.committed).toBe(reaching - held.length);
      const keys = () => dumpTarget(t.db, "mini_audit").then((rows) => rows.map((r) => JSON.parse(r) as { key: string; data: Record<string, unknown> }));
      expect((await keys()).some((r) => held.includes(r.key))).toBe(false);

      const [edited, rejected, ...approved] = held;
      await decide(t.db, first.runId, "edit", [edited!], { by: "qa", edits: { category: "other" } });
      await decide(t.db, first.runId, "reject", [rejected!], { by: "qa" });
      await decide(t.db, first.runId, "approve", approved, { by: "qa" });
      const after = await resumeRun(opts, first.runId);
      expect(after.items.byStatus.committed).toBe(reaching - 1);
      expect(after.items.byStatus.rejected).toBe(1);
      expect(after.items.byStatus.needs_review).toBeUndefined();
      const rows = await keys();
      expect(rows.find((r) => r.key === edited)?.data.category).toBe("other");
      expect(rows.some((r) => r.key === rejected)).toBe(false);
      expect(rows.length).toBe(reaching - 1);

      // The next run over the same items asks nothing again: the decisions hold.
      const again = await runPipeline(opts, inputFile());
      expect(again.items.byStatus).toEqual(after.items.byStatus);
    });
  });
}
