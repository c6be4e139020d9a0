import { describe, expect, it } from "vitest";
import type { CompletionResult } from "../providers/types.ts";
import { InflightAnswers } from "./inflight.ts";

const answer = (text: string) => Promise.resolve<CompletionResult | undefined>({ text, finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1 }, model: "m" });

describe("answers in flight", () => {
  it("keeps a written answer for a chunk that read the request cache before it was written, and drops it once that chunk ends", () => {
    const inflight = new InflightAnswers();
    const before = inflight.enter();
    const a = answer("a");
    inflight.set("h1", a);
    inflight.retire(["h1"]);
    expect(inflight.get("h1")).toBe(a);
    // A chunk entering now reads the cache after the write: it does not hold the answer back.
    const after = inflight.enter();
    inflight.leave(before);
    expect(inflight.get("h1")).toBeUndefined();
    expect(inflight.size).toBe(0);
    inflight.leave(after);
  });

  it("drops a written answer at once when no chunk is between its cache read and its end", () => {
    const inflight = new InflightAnswers();
    inflight.set("h1", answer("a"));
    inflight.set("h2", answer("b"));
    inflight.retire(["h1"]);
    expect(inflight.get("h1")).toBeUndefined();
    // Not written yet: still in flight.
    expect(inflight.get("h2")).toBeDefined();
  });

  it("gives a waiter the answer in flight, and after a failed call the answer of the call that took its place, or none", async () => {
    const inflight = new InflightAnswers();
    expect(await inflight.shared("h0")).toBeUndefined();
    const a = answer("a");
    inflight.set("h1", a);
    expect((await inflight.shared("h1"))?.text).toBe("a");
    // A call that fails while another has already taken its place: the waiter gets the second's answer.
    let fail!: (r: CompletionResult | undefined) => void;
    const failing = new Promise<CompletionResult | undefined>((resolve) => (fail = resolve));
    inflight.set("h2", failing);
    const waiting = inflight.shared("h2");
    inflight.set("h2", answer("b"));
    fail(undefined);
    expect((await waiting)?.text).toBe("b");
    // A failed call with none after it: nothing to wait for, and it is forgotten.
    inflight.set("h3", Promise.resolve(undefined));
    expect(await inflight.shared("h3")).toBeUndefined();
    expect(inflight.get("h3")).toBeUndefined();
  });

  it("forgets a failed call only if no other call took its place", () => {
    const inflight = new InflightAnswers();
    const failed = Promise.resolve(undefined);
    const retry = answer("again");
    inflight.set("h1", failed);
    inflight.set("h1", retry);
    inflight.forget("h1", failed);
    expect(inflight.get("h1")).toBe(retry);
    inflight.forget("h1", retry);
    expect(inflight.get("h1")).toBeUndefined();
  });

  it("holds no more than what was written while the oldest open chunk was open, over many chunks", () => {
    const inflight = new InflightAnswers();
    // Four chunks open at a time, each writing 100 answers, 1,000 chunks in all.
    const open: number[] = [];
    let most = 0;
    for (let c = 0; c < 1000; c++) {
      open.push(inflight.enter());
      for (let i = 0; i < 100; i++) inflight.set(`c${c}-${i}`, answer(String(i)));
      inflight.retire(Array.from({ length: 100 }, (_, i) => `c${c}-${i}`));
      if (open.length === 4) inflight.leave(open.shift()!);
      most = Math.max(most, inflight.size);
    }
    expect(most).toBeLessThanOrEqual(400);
    for (const at of open) inflight.leave(at);
    expect(inflight.size).toBe(0);
  });
});
