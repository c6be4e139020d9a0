import { describe, expect, it } from "vitest";
import { learnGateOdds, type GateExample } from "./gate-odds.ts";

/** Tickets whose subject says what they are; the gate lets refunds and bugs through, and a tenth of the rest. */
const kinds = [
  { words: "refund my order please", passed: true },
  { words: "the app crashes on export", passed: true },
  { words: "how do I change my password", passed: false },
  { words: "thanks for the quick answer", passed: false },
];
const fillers = ["today", "again", "urgent", "team", "account", "yesterday", "invoice", "mobile"];
function tickets(from: number, n: number): GateExample[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    const kind = kinds[i % kinds.length]!;
    // One in ten of the others passes as well: the words decide most, not all.
    const passed = kind.passed || i % 10 === 3;
    return { data: { subject: `${kind.words} ${fillers[i % fillers.length]}`, body: `ticket ${i}` }, passed };
  });
}

describe("a gate's odds per item", () => {
  const odds = learnGateOdds(tickets(0, 400));

  it("tells items the gate lets through from those it keeps out, by their words", () => {
    expect(odds.odds({ subject: "refund my order please", body: "" })).toBeGreaterThan(0.8);
    const never = odds.odds({ subject: "how do I change my password", body: "" });
    const sometimes = odds.odds({ subject: "thanks for the quick answer", body: "" });
    expect(never).toBeLessThan(0.3);
    // A fifth of these passed: more likely than the ones that never did, far less than refunds.
    expect(sometimes).toBeGreaterThan(never);
    expect(sometimes).toBeLessThan(0.5);
  });

  it("adds up, over items it did not learn from, to about as many as the gate lets through", () => {
    const unseen = tickets(400, 400);
    const expected = unseen.reduce((s, t) => s + odds.odds(t.data), 0);
    const actual = unseen.filter((t) => t.passed).length;
    expect(Math.abs(expected - actual) / actual).toBeLessThan(0.1);
  });

  it("gives an item like none it learned from about the run's pass rate", () => {
    expect(Math.abs(odds.odds({ subject: "zzz qqq", body: "" }) - odds.prior)).toBeLessThan(0.15);
    expect(learnGateOdds([]).odds({ subject: "anything" })).toBe(0.5);
  });

  it("keeps a short item of mostly unseen words near the run's rate, though one of its words always went with a pass", () => {
    // Long tickets; "quarterly" happens to be in 24 of them, all of which passed for their other words.
    const long = Array.from({ length: 400 }, (_, i) => {
      const kind = kinds[i % kinds.length]!;
      const extra = kind.passed && i % 8 < 2 ? " quarterly" : "";
      return { data: { subject: `${kind.words} ${fillers[i % fillers.length]}${extra}`, body: `ticket ${i} ${fillers.join(" ")}` }, passed: kind.passed };
    });
    expect(long.filter((t) => t.data.subject.includes("quarterly")).length).toBeGreaterThan(20);
    const learned = learnGateOdds(long);
    // As the examples had it, among many words, it says little; alone with words never seen, it does not decide.
    const short = learned.odds({ subject: "quarterly line ends", body: "" });
    expect(Math.abs(short - learned.prior)).toBeLessThan(0.2);
    // Words seen often still decide, in a short item as in a long one.
    expect(learned.odds({ subject: "refund my order please", body: "" })).toBeGreaterThan(0.8);
  });
});
