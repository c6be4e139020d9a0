import type { Hono } from "hono";
import type { PipelineDef } from "../core/types.ts";
import type { Database } from "../store/database.ts";
import type { RunRow } from "../store/runs.ts";
import type { Html } from "../report/html.ts";
import type { PageOptions } from "./layout.ts";

/** What every page of the console gets: the store, and whether it may write to it. */
export interface ConsoleContext {
  db: Database;
  /** False unless `sluice ui --allow-writes`: pages then offer no action and POST routes answer 403. */
  allowWrites: boolean;
  /** A whole page in the console's frame (navigation, stylesheet). */
  render(page: PageOptions): string;
  /**
   * A run's pipeline as defined now, when whoever started the console can
   * load pipeline code (`sluice ui` does): review decisions are then checked
   * as the CLI checks them (an edit against the row, a run whose stages
   * changed). The console itself loads no user code.
   */
  pipelineOf?: (run: RunRow) => Promise<PipelineDef | undefined>;
}

/**
 * One page (or family of pages) of the console: its routes, and its entry
 * in the navigation bar if it has one. A page is added by writing one module
 * that exports a `ConsolePage` and listing it in `pages/index.ts`.
 *
 * @example
 * export const reviewPage: ConsolePage = {
 *   nav: { href: "/review", label: "Review" },
 *   routes(app, ctx) { app.get("/review", async (c) => c.html(ctx.render({ title: "Review", section: "/review", body: html`...` }))); },
 * };
 */
export interface ConsolePage {
  nav?: { href: string; label: string };
  routes(app: Hono, ctx: ConsoleContext): void;
}

export type { Html };
