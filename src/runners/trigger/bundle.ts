import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { BuildExtension } from "@trigger.dev/core/v3/build";
import type { Plugin } from "esbuild";
import { pipelineFiles } from "../../preset/pipelines.ts";

/**
 * Pipelines for a Trigger.dev build. Run from source, `trigger/pipelines.ts`
 * reads `pipelines/` when it loads; a bundle cannot (the files are not next to
 * it, and the bundler only includes what is imported). So when `trigger.dev
 * dev` or `deploy` bundles the tasks, this esbuild plugin replaces that module
 * with static imports of the same files (`pipelineFiles`, which `sluice ls`
 * lists too): a pipeline added to `pipelines/` is in the next build, with no
 * list to keep.
 */

/** Where `checkedPipeline` lives, for the module the plugin writes. */
const PRESET = fileURLToPath(new URL("../../preset/pipelines.ts", import.meta.url));

export interface PipelinesPluginOptions {
  /** The module replaced: the project's `trigger/pipelines.ts`. */
  module: string;
  /** The folder whose pipelines it exports: the project's `pipelines/`. */
  pipelinesDir: string;
}

/** The module a build gets instead of `trigger/pipelines.ts`: the same export, with every pipeline imported statically. */
export function pipelinesModuleSource(pipelinesDir: string): string {
  const files = pipelineFiles(pipelinesDir);
  const lines = [`import { checkedPipeline } from ${JSON.stringify(PRESET)};`];
  files.forEach((file, i) => lines.push(`import pipeline${i} from ${JSON.stringify(file)};`));
  const checked = files.map((file, i) => `checkedPipeline(pipeline${i}, ${JSON.stringify(`pipelines/${relative(pipelinesDir, file)}`)})`);
  lines.push(`export const PIPELINES = [${checked.join(", ")}];`);
  return `${lines.join("\n")}\n`;
}

/** The esbuild plugin: `trigger/pipelines.ts` becomes {@link pipelinesModuleSource}. */
export function pipelinesPlugin(options: PipelinesPluginOptions): Plugin {
  const target = resolve(options.module);
  return {
    name: "sluice-pipelines",
    setup(build) {
      build.onLoad({ filter: /[\\/]pipelines\.[cm]?[jt]s$/ }, (args) => {
        if (resolve(args.path) !== target) return undefined;
        try {
          return { contents: pipelinesModuleSource(options.pipelinesDir), loader: "ts", resolveDir: dirname(target), watchDirs: [options.pipelinesDir] };
        } catch (err) {
          return { errors: [{ text: (err as Error).message }] };
        }
      });
    },
  };
}

/**
 * The build extension for `trigger.config.ts`: registers {@link pipelinesPlugin}
 * for the project the CLI builds (`<workingDir>/trigger/pipelines.ts` and
 * `<workingDir>/pipelines/`).
 *
 * @example
 * export default defineConfig({ dirs: ["./trigger"], build: { extensions: [sluicePipelines()] } });
 */
export function sluicePipelines(): BuildExtension {
  return {
    name: "sluice-pipelines",
    onBuildStart(context) {
      const options = { module: join(context.workingDir, "trigger", "pipelines.ts"), pipelinesDir: join(context.workingDir, "pipelines") };
      context.registerPlugin(pipelinesPlugin(options), { placement: "first" });
      context.logger.debug(`[sluice-pipelines] ${pipelineFiles(options.pipelinesDir).length} pipeline(s) in ${options.pipelinesDir}`);
    },
  };
}
