import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
// Many suites spawn `bin/sluice.mjs`, which runs the compiled CLI in dist/:
// compile it first when a source is newer than the last build.
// @ts-expect-error a plain ES module script, without types
import { buildIfStale } from "../scripts/build.mjs";

/**
 * Suites make temporary folders (stores, inputs, snapshots) and the processes
 * they spawn make more: all of them go under one folder for this run of the
 * suite (TMPDIR, which `os.tmpdir()` reads and test workers and spawned
 * processes inherit), removed when the run ends, so repeated runs do not fill
 * the disk. The embedded store's template (see `store/pglite`) is kept there
 * too, not in the user's cache folder: made once per run, copied by every
 * store the suites create on disk.
 */
export default function setup(): () => void {
  (buildIfStale as () => void)();
  const root = mkdtempSync(join(tmpdir(), "sluice-tests-"));
  const previous = process.env.TMPDIR;
  const previousCache = process.env.SLUICE_CACHE_DIR;
  process.env.TMPDIR = root;
  process.env.SLUICE_CACHE_DIR = join(root, "cache");
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    if (previousCache === undefined) delete process.env.SLUICE_CACHE_DIR;
    else process.env.SLUICE_CACHE_DIR = previousCache;
    rmSync(root, { recursive: true, force: true });
  };
}
