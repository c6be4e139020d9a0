import { readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Starts the test files that take longest first, so that the suite does not
 * end waiting on one long file started last: on CI's two cores, a fresh
 * checkout (no results of an earlier run for vitest to go by) ran its files
 * largest first, in 636 s of test time; longest first, in 559 s.
 * The seconds are those of one run of the suite (`test/durations.json`,
 * written by `node scripts/test-durations.mjs REPORT.json`); a file not in it
 * is new, and goes first, as vitest runs files it knows nothing of.
 */
export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    // import.meta.url, not dirname: vitest bundles its config, and keeps only the former as this file's.
    const here = dirname(fileURLToPath(import.meta.url));
    const seconds = JSON.parse(readFileSync(join(here, "durations.json"), "utf8")) as Record<string, number>;
    const root = join(here, "..");
    const known = (f: TestSpecification) => seconds[relative(root, f.moduleId)] ?? Number.POSITIVE_INFINITY;
    return [...files].sort((a, b) => known(b) - known(a));
  }
}
