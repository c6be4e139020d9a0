import { cpSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { defineConfig } from "@trigger.dev/sdk";
import { sluicePipelines } from "./src/runners/trigger/bundle.ts";

/**
 * Trigger.dev project configuration (`npx trigger.dev@4.8.3 dev` / `deploy`).
 * Tasks come from `trigger/`, which turns every pipeline in `pipelines/` into
 * tasks (found when the bundle is built, see `sluicePipelines`); see "Run on Trigger.dev" in README.md.
 */
export default defineConfig({
  // The project ref from the dashboard (proj_...); `trigger.dev init` would hard-code it here instead.
  project: process.env.TRIGGER_PROJECT_REF ?? "<set TRIGGER_PROJECT_REF>",
  dirs: ["./trigger"],
  // Required by v4. Tasks set their own (stage chunks 900 s, orchestrators 3,600 s of compute).
  maxDuration: 3600,
  retries: {
    // Each sluice task sets its own retry: the engine retries items, tasks only retry infrastructure failures.
    enabledInDev: true,
    default: { maxAttempts: 3, minTimeoutInMs: 1_000, maxTimeoutInMs: 10_000, factor: 2, randomize: true },
  },
  build: {
    // Workers use Postgres (DATABASE_URL); embedded PGlite is never loaded there, so it is not bundled.
    external: ["@electric-sql/pglite"],
    extensions: [
      // Every pipeline in pipelines/ is bundled: trigger/pipelines.ts becomes static imports of them.
      sluicePipelines(),
      {
        // The store applies its SQL migrations on open, from a folder next to its code
        // (`new URL("./migrations", import.meta.url)`). Bundling moves that code into a
        // chunk, so the folder is copied next to whichever output file holds it.
        name: "sluice-migrations",
        async onBuildComplete(context, manifest) {
          const source = join(context.workingDir, "src/store/migrations");
          for (const file of outputFiles(manifest.outputPath)) {
            if (!readFileSync(file, "utf8").includes(`new URL("./migrations", import.meta.url)`)) continue;
            cpSync(source, join(dirname(file), "migrations"), { recursive: true });
            context.logger.debug(`[sluice-migrations] copied ${source} next to ${file}`);
          }
        },
      },
    ],
  },
});

function outputFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".mjs") && !e.parentPath.includes("node_modules"))
    .map((e) => join(e.parentPath, e.name));
}
