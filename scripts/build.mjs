#!/usr/bin/env node
// `npm run build`: compile src/ and stages/ to dist/ (tsconfig.build.json) and
// copy what the compiled code reads beside itself (the store's SQL migrations).
// `--if-stale` builds only when a source is newer than the last build: the
// test suite, the benchmarks and `npm run demo` call it so a spawned `sluice`
// never runs code older than the sources.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const STAMP = join(ROOT, "dist", ".built");
const SOURCES = ["src", "stages"];
const CONFIGS = ["tsconfig.json", "tsconfig.build.json", "package.json"];

function newestSource() {
  let newest = 0;
  for (const dir of SOURCES) {
    for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })) {
      if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
    }
  }
  for (const file of CONFIGS) newest = Math.max(newest, statSync(join(ROOT, file)).mtimeMs);
  return newest;
}

/** Whether dist/ is missing or older than a source. */
export function stale() {
  return !existsSync(STAMP) || statSync(STAMP).mtimeMs < newestSource();
}

/**
 * Compile. tsc's incremental build emits only what changed in the sources
 * since its last build, and would leave a compiled file deleted or edited
 * since as it is; a full build (`{ full: true }`, `npm run build`) forgets
 * that record first, so every file is written again.
 */
export function build({ full = false } = {}) {
  if (full) rmSync(join(ROOT, "dist", ".tsbuildinfo"), { force: true });
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", join(ROOT, "tsconfig.build.json")], { cwd: ROOT, stdio: "inherit" });
  // The embedded database's thread is plain JavaScript (src/store/pglite/worker.mjs).
  cpSync(join(ROOT, "src", "store", "pglite", "worker.mjs"), join(ROOT, "dist", "src", "store", "pglite", "worker.mjs"));
  const migrations = join(ROOT, "dist", "src", "store", "migrations");
  rmSync(migrations, { recursive: true, force: true });
  cpSync(join(ROOT, "src", "store", "migrations"), migrations, { recursive: true });
  writeFileSync(STAMP, `${new Date().toISOString()}\n`);
}

/** Build when stale; for test and benchmark set-up. */
export function buildIfStale() {
  if (stale()) build();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes("--if-stale")) buildIfStale();
  else build({ full: true });
}
