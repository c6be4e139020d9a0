import type { Context } from "hono";
import { html } from "../../report/html.ts";
import type { ConsoleContext } from "../context.ts";

export const status = (s: string) => html`<span class="status ${s}">${s.replace(/_/g, " ")}</span>`;

/** A timestamp from the store, in UTC to the second. */
export const when = (at: string | Date) => `${new Date(at).toISOString().replace("T", " ").slice(0, 19)} UTC`;

/** Pretty JSON for a `<pre>`. */
export const json = (value: unknown) => (value === null || value === undefined ? "(none)" : JSON.stringify(value, null, 2));

export function notFound(c: Context, ctx: ConsoleContext, message: string) {
  return c.html(ctx.render({ title: "Not found", body: html`<h1>Not found</h1><p>${message}</p><p><a href="/runs">Runs</a></p>` }), 404);
}
