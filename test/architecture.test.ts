import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The two rules ARCHITECTURE.md states for the layers, checked against the
 * code: SQL lives in `src/store/` only, and runners reach the engine through
 * its surface only.
 */

const root = join(import.meta.dirname, "..");

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) out.push(...sourceFiles(path));
    else if (/\.[cm]?ts$/.test(name) && !/\.test\.ts$/.test(name)) out.push(path);
  }
  return out;
}

const code = ["src", "pipelines", "stages", "trigger", "bench", "scripts"].flatMap(sourceFiles);

describe("architecture", () => {
  it("finds the source tree", () => {
    expect(code.length).toBeGreaterThan(100);
    expect(code).toContain(join("src", "store", "results.ts"));
  });

  it("keeps SQL in src/store: no other file imports drizzle-orm or writes a sql template", () => {
    const offenders = code
      .filter((f) => !f.startsWith(join("src", "store") + "/"))
      .filter((f) => {
        const text = readFileSync(join(root, f), "utf8");
        return /from "drizzle-orm(\/[^"]*)?"/.test(text) || /\bsql`/.test(text);
      });
    expect(offenders).toEqual([]);
  });

  it("has the console import no command, runner or engine module: it reads through inspect, report and store", () => {
    const up: string[] = [];
    for (const f of code.filter((f) => f.startsWith(join("src", "ui") + "/"))) {
      for (const m of readFileSync(join(root, f), "utf8").matchAll(/from "(\.[^"]+)"/g)) {
        const target = relative(root, join(root, f, "..", m[1]!));
        if (["cli", "engine", "runners"].some((layer) => target.startsWith(join("src", layer) + "/"))) up.push(`${f} -> ${target}`);
      }
    }
    expect(up).toEqual([]);
  });

  it("has runners import the engine through its surface only", () => {
    const deep: string[] = [];
    for (const f of code.filter((f) => f.startsWith(join("src", "runners") + "/"))) {
      for (const m of readFileSync(join(root, f), "utf8").matchAll(/from "([^"]+)"/g)) {
        const target = relative(root, join(root, f, "..", m[1]!));
        if (target.startsWith(join("src", "engine") + "/") && target !== join("src", "engine", "index.ts")) deep.push(`${f} -> ${target}`);
      }
    }
    expect(deep).toEqual([]);
  });
});
