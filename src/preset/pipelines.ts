import { readdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { checkPipeline } from "../core/define.ts";
import { loadFailure, SluiceError } from "../core/errors.ts";
import type { PipelineDef } from "../core/types.ts";

/**
 * Finding a project's pipelines: every module in its `pipelines/` folder
 * default-exports one. `sluice ls`, `sluice schedule list` and the
 * Trigger.dev entry (`trigger/pipelines.ts`, and the build extension that
 * bundles it) all list the folder with {@link pipelineFiles}, so they agree
 * on what a pipeline is.
 */

/** Pipeline modules in `dir`, sorted: `.ts`/`.js` files (and their `c`/`m` forms), tests and declarations left out. */
export function pipelineFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    throw new SluiceError(`no pipelines/ folder at ${dir}`);
  }
  return names
    .filter((f) => /\.[cm]?[jt]s$/.test(f) && !/\.(test|spec)\./.test(f) && !/\.d\.[cm]?ts$/.test(f))
    .sort()
    .map((f) => join(dir, f));
}

/**
 * Import one pipeline module and check its definition. `label` names the file
 * in errors (a path relative to the project, say).
 */
export async function importPipeline(file: string, label = file): Promise<PipelineDef> {
  let mod: { default?: unknown };
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (err) {
    throw new SluiceError(`pipeline ${label} failed to load: ${loadFailure(err)}`);
  }
  return checkedPipeline(mod.default, label);
}

/** A module's default export, checked as a pipeline definition. */
export function checkedPipeline(value: unknown, label: string): PipelineDef {
  if (!value || typeof value !== "object") {
    throw new SluiceError(`pipeline ${label} has no default export (export default definePipeline({ ... }))`);
  }
  checkPipeline(value as PipelineDef);
  return value as PipelineDef;
}

/**
 * Every pipeline in `dir`, imported and checked, in file name order.
 *
 * @example
 * const pipelines = await discoverPipelines(join(process.cwd(), "pipelines"));
 */
export async function discoverPipelines(dir: string): Promise<PipelineDef[]> {
  const pipelines: PipelineDef[] = [];
  for (const file of pipelineFiles(dir)) pipelines.push(await importPipeline(file, `pipelines/${file.slice(dir.length).replace(/^[\\/]/, "")}`));
  return pipelines;
}
