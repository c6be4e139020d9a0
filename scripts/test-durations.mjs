#!/usr/bin/env node
// `node scripts/test-durations.mjs REPORT.json`: write test/durations.json,
// each test file's seconds in a run of the suite, from vitest's JSON report
// (`npx vitest run --reporter=json --outputFile=REPORT.json`; `.ci/run`
// writes one too). test/sequencer.ts starts the longest files first.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const report = process.argv[2];
if (!report) {
  console.error("usage: node scripts/test-durations.mjs REPORT.json");
  process.exit(1);
}
const { testResults } = JSON.parse(readFileSync(report, "utf8"));
/** The file's path in this checkout: the report may come from another (a CI clone). */
function inRepo(name) {
  const parts = name.split("/");
  for (let i = 1; i < parts.length; i++) {
    const path = parts.slice(i).join("/");
    if (existsSync(join(ROOT, path))) return path;
  }
  return name;
}
const seconds = Object.fromEntries(
  testResults
    .map((file) => [inRepo(file.name), Math.round((file.endTime - file.startTime) / 100) / 10])
    .sort(([a], [b]) => (a < b ? -1 : 1)),
);
writeFileSync(join(ROOT, "test", "durations.json"), `${JSON.stringify(seconds, null, 2)}\n`);
console.log(`test/durations.json: ${Object.keys(seconds).length} files`);
