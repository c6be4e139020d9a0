import { fileURLToPath } from "node:url";
import type { PipelineDef } from "sluice/core";
import { discoverPipelines } from "../src/preset/pipelines.ts";

/**
 * Every pipeline in `pipelines/`. Run from source, the folder is read when
 * this module loads. A Trigger.dev build (`trigger.dev dev` or `deploy`) never
 * runs this: the `sluice-pipelines` build extension in `trigger.config.ts`
 * replaces the module with static imports of the same files, so the bundle
 * holds every pipeline (see src/runners/trigger/bundle.ts).
 */
export const PIPELINES: PipelineDef[] = await discoverPipelines(fileURLToPath(new URL("../pipelines/", import.meta.url)));
