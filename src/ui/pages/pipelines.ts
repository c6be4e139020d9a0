import { html, int, usd } from "../../report/html.ts";
import { stageVersions } from "../../inspect/versions.ts";
import { pipelinesWithRuns } from "../../store/run-details.ts";
import type { ConsolePage } from "../context.ts";
import { paths } from "../paths.ts";
import { json, notFound, when } from "./common.ts";

/** Pipelines with runs in the store, and each one's stage versions: what changed, when, and what its outputs cost. */
export const pipelinesPage: ConsolePage = {
  nav: { href: paths.pipelines(), label: "Pipelines" },
  routes(app, ctx) {
    app.get("/pipelines", async (c) => {
      const rows = await pipelinesWithRuns(ctx.db);
      const body = html`<h1>Pipelines</h1>
        ${rows.length === 0
          ? html`<p class="muted">No pipeline has run against this store yet.</p>`
          : html`<table><tr><th>pipeline</th><th class="num">runs</th><th>last run</th><th>at</th></tr>
          ${rows.map((p) => html`<tr><td><a href="${paths.pipeline(p.pipeline)}">${p.pipeline}</a></td><td class="num">${int(p.runs)}</td><td><a class="mono" href="${paths.run(p.last_run)}">${p.last_run}</a></td><td>${when(p.last_at)}</td></tr>`)}</table>`}`;
      return c.html(ctx.render({ title: "Pipelines", section: paths.pipelines(), body }));
    });

    app.get("/pipelines/:id", async (c) => {
      const id = c.req.param("id");
      const versions = await stageVersions(ctx.db, id);
      const stages = [...new Set(versions.map((v) => v.stage))];
      // A pipeline with no run in this store is not one the console knows: 404, as an unknown run is.
      if (stages.length === 0) return notFound(c, ctx, `No runs of pipeline ${id} in this store.`);
      const body = html`<h1>Pipeline ${id}</h1>
        <p class="note">Every version of every stage its runs used, oldest first: what changed from the one before, how many outputs it made and what they cost. Outputs of old versions stay in the store, so going back to one costs nothing.</p>
        ${stages.map((stage) => html`<div class="stage"><h3>${stage}</h3><table>
          <tr><th>version</th><th>changed</th><th class="num">runs</th><th>first run</th><th class="num">outputs</th><th class="num">cost</th></tr>
          ${versions.filter((v) => v.stage === stage).map((v) => html`<tr><td><code>${v.version}</code></td>
            <td>${v.changes.length ? v.changes.map((ch, i) => html`${i ? ", " : ""}<details style="display:inline"><summary>${ch.part}</summary><pre>${json(ch.from)}\n→\n${json(ch.to)}</pre></details>`) : v.previous ? "–" : html`<span class="muted">first</span>`}</td>
            <td class="num">${int(v.runs)}</td><td>${v.firstRunId ? html`<a class="mono" href="${paths.run(v.firstRunId)}">${v.firstRunId}</a> ${v.firstRunAt ? when(v.firstRunAt) : ""}` : "–"}</td>
            <td class="num">${int(v.outputs)}</td><td class="num">${usd(v.costUsd)}</td></tr>`)}
        </table></div>`)}`;
      return c.html(ctx.render({ title: `Pipeline ${id}`, section: paths.pipelines(), body }));
    });
  },
};
