import { stat } from "node:fs/promises";
import { join } from "node:path";
import { glob } from "tinyglobby";
import type { PipelineDef } from "../core/types.ts";
import { sourceFingerprint } from "../sources/index.ts";
import type { Database } from "../store/database.ts";
import { filesRead } from "../store/sources.ts";

/**
 * The files of a glob source not read yet. Only a directory listing, file
 * hashes and a store read, so both the local sensors (`increments.ts`) and
 * the Trigger.dev sensor task use it.
 */

export interface UnreadFile {
  /** Relative to where the glob is matched: what `source_files` records. */
  path: string;
  /** The file's absolute path. */
  file: string;
  /** Its content's fingerprint: the same path with new content is a new file. */
  fingerprint: string;
}

/**
 * A file changed within this many milliseconds may still be being written (a
 * copy, a download): it is left for a later look. A writer that renames a
 * finished file into place (or writes under a dot name, which a glob does not
 * match) never has its file read half written, whatever the wait.
 */
export const FILE_SETTLE_MS = 2_000;

/** A file a glob matched that changed too recently to be read. */
export interface UnsettledFile {
  path: string;
  /** How long ago it last changed. */
  changedMsAgo: number;
}

/**
 * Files of a glob source not read yet (by path and content), in name order,
 * and those left for later because they changed within `settleMs`.
 */
export async function unreadFiles(db: Database, pipeline: PipelineDef, cwd = process.cwd(), settleMs = FILE_SETTLE_MS): Promise<UnreadFile[] & { unsettled: UnsettledFile[] }> {
  const matched = (await glob(pipeline.source.glob!, { cwd, onlyFiles: true, expandDirectories: false })).sort();
  const now = Date.now();
  const unsettled: UnsettledFile[] = [];
  const paths: string[] = [];
  const changed = await Promise.all(matched.map(async (path) => now - (await stat(join(cwd, path))).mtimeMs));
  for (const [i, path] of matched.entries()) {
    if (changed[i]! < settleMs) unsettled.push({ path, changedMsAgo: Math.max(0, Math.round(changed[i]!)) });
    else paths.push(path);
  }
  const files = await Promise.all(paths.map(async (path) => ({ path, file: join(cwd, path), fingerprint: await sourceFingerprint(join(cwd, path)) })));
  const read = await filesRead(db, pipeline.id, paths);
  return Object.assign(
    files.filter((f) => !read.has(`${f.path}\0${f.fingerprint}`)),
    { unsettled },
  );
}
