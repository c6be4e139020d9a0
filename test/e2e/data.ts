import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./cli.ts";

/** The first `n` tickets of the demo data (header kept), so a test stays quick. */
export function demoSlice(n: number): string {
  const lines = readFileSync(join(ROOT, "examples/data/tickets.csv"), "utf8").split("\n");
  // Records can span lines (quoted bodies); cut before the (n+1)th record start (ids look like T-00042).
  let seen = 0;
  let end = 1;
  for (; end < lines.length; end++) if (/^T-\d{5},/.test(lines[end]!) && ++seen > n) break;
  const path = join(mkdtempSync(join(tmpdir(), "sluice-slice-")), "tickets.csv");
  writeFileSync(path, `${lines.slice(0, end).join("\n")}\n`);
  return path;
}
