import { register as registerHooks } from "node:module";
import { pathToFileURL } from "node:url";

/**
 * Users write pipelines and `sluice.config.ts` in TypeScript; the CLI itself
 * is compiled JavaScript. A TypeScript loader (tsx) is registered the first
 * time a user file is imported, so commands that load none (`status`,
 * `cost`, `--help`) never pay for it.
 *
 * When the CLI runs from `dist/`, a pipeline's `import ... from "sluice/core"`
 * (or a relative import of this package's `src/`) would load sluice's
 * TypeScript sources beside the compiled copy the CLI runs: two copies of
 * `sluice/core`, whose error classes and caches would not be the CLI's.
 * A resolve hook (`redirect-hooks.ts`) sends those imports to the compiled
 * files, so a pipeline and the CLI share one sluice.
 */
let ready: Promise<void> | undefined;

/** Whether this module is running as compiled JavaScript (the `bin` from `dist/`), not from its TypeScript source. */
export const compiled = import.meta.url.endsWith(".js");

/** Make user TypeScript importable (once); `importUserModule` calls it, and so must any other importer of user files. */
export function prepareUserCode(): Promise<void> {
  ready ??= (async () => {
    if (!compiled) return; // running from source: the TypeScript loader is already in place
    const { register } = await import("tsx/esm/api");
    register();
    // Registered after tsx, so it runs first and sees where tsx and Node resolved an import.
    registerHooks(new URL("./redirect-hooks.js", import.meta.url), { data: { root: new URL("../../../", import.meta.url).href } });
  })();
  return ready;
}

/** Import a user's module (`.ts`, `.mts`, `.js`, `.mjs`) by path. */
export async function importUserModule<T = unknown>(file: string): Promise<T> {
  await prepareUserCode();
  return (await import(pathToFileURL(file).href)) as T;
}
