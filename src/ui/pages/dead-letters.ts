import { html, int } from "../../report/html.ts";
import { deadLetters } from "../../store/reports.ts";
import { deadLetterCountsByRun } from "../../store/run-details.ts";
import { getRun } from "../../store/runs.ts";
import { requeueDeadLetters } from "../../store/work.ts";
import type { ConsolePage } from "../context.ts";
import { paths } from "../paths.ts";
import { notFound, status, when } from "./common.ts";

/** Dead letters: runs that have any, one run's list, and (with `--allow-writes`) requeueing them for `sluice resume`. */
export const deadLettersPage: ConsolePage = {
  nav: { href: paths.deadLetters(), label: "Dead letters" },
  routes(app, ctx) {
    app.get("/dead-letters", async (c) => {
      const runs = await deadLetterCountsByRun(ctx.db, 50);
      const body = html`<h1>Dead letters</h1>
        <p class="note">Items that failed for good at some stage (a deterministic error, or a transient one past its attempts), by run.</p>
        ${runs.length === 0
          ? html`<p class="muted">No run has dead letters.</p>`
          : html`<table><tr><th>run</th><th>pipeline</th><th>started</th><th class="num">dead letters</th></tr>
            ${runs.map((r) => html`<tr><td><a class="mono" href="${paths.deadLetters(r.run_id)}">${r.run_id}</a></td><td>${r.pipeline}</td><td>${when(r.created_at)}</td><td class="num">${int(r.n)}</td></tr>`)}</table>`}`;
      return c.html(ctx.render({ title: "Dead letters", section: paths.deadLetters(), body }));
    });

    app.get("/runs/:runId/dead-letters", async (c) => {
      const runId = c.req.param("runId");
      if (!(await getRun(ctx.db, runId))) return notFound(c, ctx, `No run ${runId} in this store.`);
      const letters = await deadLetters(ctx.db, runId);
      const requeued = c.req.query("requeued");
      const body = html`<h1>Dead letters of <a class="mono" href="${paths.run(runId)}">${runId}</a></h1>
        ${requeued !== undefined ? html`<p class="note">Requeued ${requeued} dead letter(s). <code>sluice resume ${runId}</code> computes them again.</p>` : ""}
        ${letters.length && ctx.allowWrites
          ? html`<form class="inline" method="post" action="${paths.deadLetters(runId)}/requeue"><button type="submit">Requeue all ${int(letters.length)}</button></form>
            <span class="muted"> then <code>sluice resume ${runId}</code></span>`
          : letters.length ? html`<p class="muted">Read-only: <code>sluice dlq retry ${runId}</code> requeues and resumes them (or start the console with <code>--allow-writes</code>).</p>` : ""}
        ${letters.length === 0
          ? html`<p class="muted">No dead letters in this run.</p>`
          : html`<table><tr><th>stage</th><th>item</th><th>class</th><th class="num">attempts</th><th>message</th></tr>
            ${letters.map((d) => html`<tr><td>${d.stage_id}</td><td><a class="mono" href="${paths.item(runId, d.item_id)}">${d.item_id}</a></td><td>${status(d.error_class ?? "unknown")}</td><td class="num">${int(d.attempts)}</td><td>${d.error_message ?? ""}</td></tr>`)}</table>`}`;
      return c.html(ctx.render({ title: `Dead letters of ${runId}`, section: paths.deadLetters(), body }));
    });

    app.post("/runs/:runId/dead-letters/requeue", async (c) => {
      const runId = c.req.param("runId");
      if (!(await getRun(ctx.db, runId))) return notFound(c, ctx, `No run ${runId} in this store.`);
      const n = await requeueDeadLetters(ctx.db, runId);
      return c.redirect(`${paths.deadLetters(runId)}?requeued=${n}`, 303);
    });
  },
};
