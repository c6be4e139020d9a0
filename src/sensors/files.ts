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

/** Files of a glob source not read yet (by path and content), in name order. */
export async function unreadFiles(db: Database, pipeline: PipelineDef, cwd = process.cwd()): Promise<UnreadFile[]> {
  const paths = (await glob(pipeline.source.glob!, { cwd, onlyFiles: true, expandDirectories: false })).sort();
  const files = await Promise.all(paths.map(async (path) => ({ path, file: join(cwd, path), fingerprint: await sourceFingerprint(join(cwd, path)) })));
  const read = await filesRead(db, pipeline.id, paths);
  return files.filter((f) => !read.has(`${f.path}\0${f.fingerprint}`));
}
