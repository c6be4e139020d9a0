#!/usr/bin/env node
// The CLI runs compiled JavaScript from dist/ (`npm run build`, run by `npm ci`
// through `prepare`). A TypeScript loader is registered only when a command
// imports a user's pipeline or sluice.config.ts (src/cli/user-code.ts).
// Without a build (a checkout whose dependencies were installed with
// --ignore-scripts), it runs the TypeScript sources under tsx instead: slower
// to start, same behaviour.
import { existsSync } from "node:fs";

const compiled = new URL("../dist/src/cli/main.js", import.meta.url);
let main;
if (existsSync(compiled)) {
  ({ main } = await import(compiled.href));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("../src/cli/main.ts"));
}
await main(process.argv);
