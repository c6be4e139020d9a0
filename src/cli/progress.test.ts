import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { StagePlan } from "../engine/context.ts";
import { duration, progressReporter, RateMeter } from "./progress.ts";

/**
 * Terminal progress, rendered into a fake TTY (a stream with `isTTY` and
 * `columns`, as cli-progress asks of a terminal) and into a plain stream, on
 * a clock the test moves: totals, "up to" ceilings, and an ETA only once the
 * rate holds still.
 */

class FakeTty extends Writable {
  isTTY = true;
  columns = 120;
  out = "";
  override _write(chunk: Buffer, _enc: string, done: () => void) {
    this.out += chunk.toString();
    done();
  }
}

/** What the terminal shows, roughly: the text written since `from`, without escape sequences. */
const screen = (raw: string, from = 0) => raw.slice(from).replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, "");

const stage = (id: string, index: number) => ({ id, index }) as StagePlan;
const classify = stage("classify", 1);
const validate = stage("validate", 3);
const counts = (total: number, open: number) => ({ total, open, byStatus: {} }) as never;

describe("RateMeter", () => {
  it("gives no ETA before the stage has run a while and settled some items", () => {
    const m = new RateMeter();
    m.start(0, 0);
    m.add(1000, 30);
    m.add(2000, 60);
    expect(m.rate()).toBe(30);
    expect(m.eta(100)).toBeUndefined();
  });

  it("gives an ETA once a steady rate has held, and takes it back when the rate jumps", () => {
    const m = new RateMeter();
    m.start(0, 0);
    for (let s = 1; s <= 8; s++) m.add(s * 1000, s * 20);
    expect(m.eta(240)).toBeCloseTo(12);
    // A provider batch lands all at once: 300 items in a second.
    m.add(9000, 460);
    expect(m.eta(100)).toBeUndefined();
  });

  it("gives none while chunks come in bursts", () => {
    const m = new RateMeter();
    m.start(0, 0);
    [[1000, 100], [2000, 100], [3000, 100], [6000, 200], [7000, 200], [8000, 400], [9000, 400]].forEach(([t, d]) => m.add(t!, d!));
    expect(m.eta(100)).toBeUndefined();
  });

  it("formats durations", () => {
    expect([duration(4.2), duration(200), duration(3900)]).toEqual(["4s", "3m 20s", "1h 05m"]);
  });
});

describe("progress on a TTY", () => {
  let tty: FakeTty;
  let clock: number;
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    tty = new FakeTty();
    clock = 0;
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  /** Let cli-progress redraw (it does on a timer), and return what it drew. */
  const frame = () => {
    const from = tty.out.length;
    vi.advanceTimersByTime(150);
    return screen(tty.out, from);
  };

  it("draws a bar with the stage's total from the start, its rate, and an ETA only once the rate is stable", () => {
    const p = progressReporter({ tty: true, stream: tty, now: () => clock });
    p.stageStarted!(classify, counts(400, 400));
    p.progress!(classify, 0, 400);
    const first = frame();
    expect(first).toContain(" classify   |");
    expect(first).toContain("| 0/400 · – items/s");
    expect(first).not.toContain("ETA");
    for (let s = 1; s <= 3; s++) {
      clock = s * 1000;
      p.progress!(classify, s * 20, 400);
    }
    expect(frame()).toMatch(/\| 60\/400 · 20 items\/s\s*$/);
    for (let s = 4; s <= 8; s++) {
      clock = s * 1000;
      p.progress!(classify, s * 20, 400);
    }
    const steady = frame();
    expect(steady).toContain("| 160/400 · 20 items/s · ETA 12s");
    // The bar is 40 cells, 160/400 of them full.
    expect(steady).toContain(`|${"█".repeat(16)}${"░".repeat(24)}|`);
    p.stop();
  });

  it("shows a later stage of a segment as 'done of up to N' while earlier stages decide, with no ETA", () => {
    const p = progressReporter({ tty: true, stream: tty, now: () => clock });
    p.stageStarted!(classify, counts(400, 400));
    p.stageStarted!(validate, counts(0, 0));
    p.progress!(validate, 0, 0, 400);
    expect(frame()).toContain(" validate   |" + "░".repeat(40) + "| 0 of up to 400 · – items/s");
    for (let s = 1; s <= 10; s++) {
      clock = s * 1000;
      p.progress!(validate, s * 10, s * 10 + 2, 400 - s * 5);
    }
    const later = frame();
    expect(later).toContain("| 100 of up to 350 · 10 items/s");
    expect(later).not.toContain("ETA");
    // Once everything before has decided, the ceiling is the total.
    p.progress!(validate, 340, 350);
    expect(frame()).toContain("| 340/350 · ");
    p.stop();
  });

  it("writes run lines above the bars and leaves the cursor shown when it stops", () => {
    const p = progressReporter({ tty: true, stream: tty, now: () => clock });
    p.runStarted!({ id: "run_x", pipeline: "demo" } as never, false);
    p.stageStarted!(classify, counts(10, 10));
    expect(frame()).toContain("started run run_x (demo)");
    p.stop();
    expect(tty.out.endsWith("\n")).toBe(true);
    expect(tty.out).toContain("\x1b[?25h");
  });
});

describe("progress as plain lines (not a TTY)", () => {
  it("keeps `stage <id>: <done>/<total>` first on every line, with the ceiling and ETA after it", () => {
    const lines: string[] = [];
    const stream = new Writable({ write: (chunk, _e, done) => (lines.push(...String(chunk).trimEnd().split("\n")), done()) });
    let clock = 0;
    const p = progressReporter({ tty: false, stream, intervalMs: 1000, now: () => clock });
    p.stageStarted!(classify, counts(400, 400));
    p.stageStarted!(validate, counts(0, 0));
    for (let s = 1; s <= 8; s++) {
      clock = s * 1000;
      p.progress!(classify, s * 20, 400);
      p.progress!(validate, s * 10, s * 10 + 2, 400 - s * 5);
    }
    expect(lines).toContain("stage classify: 0/400 done at start");
    expect(lines).toContain("stage validate: takes items as earlier stages pass them on");
    expect(lines).toContain("stage classify: 160/400 · 20 items/s · ETA 12s");
    expect(lines).toContain("stage validate: 80/82 (up to 360 as earlier stages decide) · 10 items/s");
    // A line a second at most: the ones past 100 items are 100, 120, 140 and 160.
    expect(lines.filter((l) => /stage classify: [1-9]\d{2,}\//.test(l))).toHaveLength(4);
    expect(lines.some((l) => /stage validate: [1-9]\d*\//.test(l))).toBe(true);
    expect(lines.join("\n")).not.toContain("\x1b");
  });
});
