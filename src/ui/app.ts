import { Hono } from "hono";
import { csrf } from "hono/csrf";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import { html } from "../report/html.ts";
import type { Database } from "../store/database.ts";
import type { ConsoleContext, ConsolePage } from "./context.ts";
import { layout } from "./layout.ts";
import { PAGES } from "./pages/index.ts";

/** Host names the console answers to: it listens on loopback, and a page reached under any other name came through DNS rebinding. */
const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost"]);
const WRITES = ["POST", "PUT", "PATCH", "DELETE"];

export interface ConsoleOptions {
  db: Database;
  allowWrites?: boolean;
  /** The pages to serve (default: all of `pages/index.ts`). */
  pages?: readonly ConsolePage[];
  /** See `ConsoleContext.pipelineOf`. */
  pipelineOf?: ConsoleContext["pipelineOf"];
}

/**
 * The web console as a Hono app over one store: runs, a run's live report,
 * items, dead letters, pipelines and their stage versions. Read-only unless
 * `allowWrites`; answers only to loopback host names, takes form posts only
 * from its own pages, and its pages load nothing from elsewhere.
 *
 * @example
 * const app = createConsoleApp({ db });
 * const res = await app.request("http://127.0.0.1/runs"); // 200, text/html
 */
export function createConsoleApp(options: ConsoleOptions): Hono {
  const pages = options.pages ?? PAGES;
  const nav = pages.map((p) => p.nav);
  const ctx: ConsoleContext = {
    db: options.db,
    allowWrites: options.allowWrites ?? false,
    render: (page) => layout(ctx, nav, page),
    pipelineOf: options.pipelineOf,
  };
  const app = new Hono();
  app.use("*", async (c, next) => {
    const host = new URL(c.req.url).hostname;
    if (!LOCAL_HOSTS.has(host)) return c.text(`sluice ui answers on 127.0.0.1 only, not ${host}`, 403);
    await next();
  });
  app.use(
    "*",
    secureHeaders({
      contentSecurityPolicy: { defaultSrc: ["'none'"], styleSrc: ["'unsafe-inline'"], imgSrc: ["'self'", "data:"], formAction: ["'self'"], frameAncestors: ["'none'"] },
      referrerPolicy: "no-referrer",
    }),
  );
  // A NUL in a path or a query names nothing in the store (Postgres text cannot hold one): not found, not a failed statement.
  app.use("*", async (c, next) => {
    const url = new URL(c.req.url);
    let decoded: string;
    try {
      decoded = decodeURIComponent(url.pathname + url.search);
    } catch {
      return c.text("malformed URL", 400);
    }
    if (decoded.includes("\u0000")) return c.text("not found", 404);
    await next();
  });
  app.use("*", async (c, next) => {
    if (WRITES.includes(c.req.method) && !ctx.allowWrites) return c.text("read-only: start sluice ui with --allow-writes to change the store", 403);
    await next();
  });
  // Form posts only from the console's own pages (Origin checked), so another site cannot requeue through a browser.
  app.use("*", csrf());
  for (const page of pages) page.routes(app, ctx);
  app.notFound((c) => c.html(ctx.render({ title: "Not found", body: html`<h1>Not found</h1><p>Nothing at <code>${c.req.path}</code>.</p><p><a href="/runs">Runs</a></p>` }), 404));
  app.onError((err, c) =>
    err instanceof HTTPException ? err.getResponse() : c.html(ctx.render({ title: "Error", body: html`<h1>Something went wrong</h1><div class="error">${err.message.split("\n")[0]}</div>` }), 500));
  return app;
}
