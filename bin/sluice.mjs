#!/usr/bin/env node
// Pipelines are TypeScript files in the user's repo, so the CLI runs under tsx's
// loader: `sluice run ticket-triage` imports pipelines/ticket-triage.ts directly.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/main.ts");
await main(process.argv);
