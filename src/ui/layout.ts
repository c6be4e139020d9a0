import { html, trusted, type Html } from "../report/html.ts";
import { STYLES } from "../report/styles.ts";
import type { ConsoleContext, ConsolePage } from "./context.ts";

export interface PageOptions {
  title: string;
  body: Html;
  /** The navigation entry to mark as the current one. */
  section?: string;
  /** Reload every this many seconds (a run still going): the page stays live without a script. */
  refreshSeconds?: number;
}

/** The console's frame around a page: navigation, read-only or writable, the shared stylesheet. */
export function layout(ctx: ConsoleContext, nav: ConsolePage["nav"][], page: PageOptions): string {
  return `<!doctype html>\n${html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
${page.refreshSeconds ? html`<meta http-equiv="refresh" content="${String(page.refreshSeconds)}">` : ""}
<title>${page.title} · sluice</title><style>${trusted(STYLES)}</style></head>
<body><header class="top"><a class="brand" href="/runs">sluice</a>
${nav.filter((n) => n !== undefined).map((n) => html`<a href="${n.href}" class="${page.section === n.href ? "here" : ""}">${n.label}</a>`)}
<span class="mode">${ctx.db.description} · ${ctx.allowWrites ? "writes allowed" : "read-only"}</span></header>
<main>${page.body}</main></body></html>`}\n`;
}
