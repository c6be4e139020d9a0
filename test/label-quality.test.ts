import { describe, expect, it } from "vitest";
import { labelQuality } from "../scripts/label-quality.ts";

describe("label quality", () => {
  it("counts agreement with the intended labels and builds the confusion table", () => {
    const labels = "id,intended_category,kind\nT-1,billing,normal\nT-2,bug,normal\nT-3,refund,normal\nT-4,spam,spam\n";
    const q = labelQuality("r", new Map([["T-1", "billing"], ["T-2", "how_to"], ["T-3", "refund"]]), labels);
    expect(q).toMatchObject({ compared: 3, agreed: 2 });
    expect(q.accuracy).toBeCloseTo(2 / 3);
    expect(q.confusion).toEqual({ billing: { billing: 1 }, bug: { how_to: 1 }, refund: { refund: 1 } });
  });
});
