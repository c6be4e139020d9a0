/**
 * Module resolve hook, registered by `user-code.ts` when the CLI runs from
 * `dist/`: an import that resolves to this package's TypeScript sources
 * (`src/**.ts`, `stages/**.ts`, e.g. through the `sluice/core` export) is
 * sent to the compiled file of the same path under `dist/`, when there is one.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

type Resolved = { url: string; format?: string | null; shortCircuit?: boolean };
type NextResolve = (specifier: string, context: unknown) => Promise<Resolved>;

let root = "";

export function initialize(data: { root: string }): void {
  root = data.root;
}

export async function resolve(specifier: string, context: unknown, next: NextResolve): Promise<Resolved> {
  const resolved = await next(specifier, context);
  if (!root || !resolved.url.startsWith(root)) return resolved;
  const rel = resolved.url.slice(root.length);
  if (!/^(src|stages)\/.*\.ts$/.test(rel)) return resolved;
  const url = `${root}dist/${rel.replace(/\.ts$/, ".js")}`;
  return existsSync(fileURLToPath(url)) ? { url, format: "module", shortCircuit: true } : resolved;
}
