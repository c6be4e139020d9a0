import { buildRunReport } from "../../inspect/report.ts";
import { reportBody } from "../../report/page.ts";
import { html, int } from "../../report/html.ts";
import { recentRuns, rejectedRowCounts } from "../../store/reports.ts";
import { itemPage, runProgress } from "../../store/run-details.ts";
import { getRun } from "../../store/runs.ts";
import { carriedPairs, recordedReads } from "../../core/dag.ts";
import type { ConsolePage } from "../context.ts";
import { paths } from "../paths.ts";
import { notFound, status, when } from "./common.ts";

const ITEMS_PER_PAGE = 100;
/** How often a run page still going reloads itself. */
const LIVE_SECONDS = 5;

/** Runs: the list with progress, one run's live report, and its items. */
export const runsPage: ConsolePage = {
  nav: { href: paths.runs(), label: "Runs" },
  routes(app, ctx) {
    app.get("/", (c) => c.redirect(paths.runs()));

    app.get("/runs", async (c) => {
      const runs = await recentRuns(ctx.db, 50);
      const running = runs.filter((r) => r.status === "running" && r.live).map((r) => r.id);
      // Progress for every run not finished: a failed run, or one stopped at its budget or killed, did not settle all its items.
      const unfinished = runs.filter((r) => r.status !== "finished").map((r) => r.id);
      const progress = new Map((await runProgress(ctx.db, unfinished)).map((p) => [p.run_id, p]));
      const body = html`<h1>Runs</h1>
        <p class="note">The 50 newest runs in this store. A run not finished shows the share of its item-by-stage steps done (an item that stopped has none left) and, for a chain of stages, how many of its items ended; a run going on reloads this page.</p>
        ${runs.length === 0
          ? html`<p class="muted">No runs yet: <code>sluice run &lt;pipeline&gt; --input &lt;file&gt;</code>.</p>`
          : html`<table>
          <tr><th>run</th><th>pipeline</th><th>status</th><th>progress</th><th class="num">rows read</th><th class="num">cost</th><th>started</th><th>finished</th></tr>
          ${runs.map((r) => {
            const p = progress.get(r.id);
            const share = r.status === "finished" ? 1 : (p?.share ?? 0);
            return html`<tr><td><a class="mono" href="${paths.run(r.id)}">${r.id}</a></td><td><a href="${paths.pipeline(r.pipeline)}">${r.pipeline}</a></td><td>${r.status === "running" && !r.live ? html`${status("stopped")} <span class="muted">no live worker: <code>sluice resume ${r.id}</code></span>` : status(r.status)}</td>
              <td><span class="progress" title="${`${Math.round(share * 100)}%`}"><span style="width:${`${Math.round(share * 100)}%`}"></span></span> ${
                r.status !== "finished" && p?.ended !== undefined ? html`<span class="muted" title="items with nothing more to do in this run">${int(p.ended)}/${int(p.items)} ended</span>` : ""
              }</td><td class="num">${int(r.rows_read)}</td><td class="num">$${r.cost.toFixed(4)}</td><td>${when(r.created_at)}</td><td>${r.finished_at ? when(r.finished_at) : "–"}</td></tr>`;
          })}</table>`}`;
      return c.html(ctx.render({ title: "Runs", section: paths.runs(), body, refreshSeconds: running.length ? LIVE_SECONDS : undefined }));
    });

    app.get("/runs/:runId", async (c) => {
      const runId = c.req.param("runId");
      if (!(await getRun(ctx.db, runId))) return notFound(c, ctx, `No run ${runId} in this store.`);
      const report = await buildRunReport(ctx.db, runId);
      const live = report.summary.status === "running";
      const deadLetters = report.summary.stages.reduce((a, s) => a + s.failed, 0);
      const inReview = report.summary.items.byStatus.needs_review ?? 0;
      const body = html`<p><a href="${paths.items(runId)}">All ${int(report.funnel.items)} items</a> · <a href="${paths.review(runId)}">${int(inReview)} in review</a> · <a href="${paths.deadLetters(runId)}">${int(deadLetters)} dead letters</a>${
        live ? html` · <span class="muted">live: reloads every ${String(LIVE_SECONDS)} s</span>` : ""
      }</p>${reportBody(report, { item: (itemId) => paths.item(runId, itemId), run: paths.run })}`;
      return c.html(ctx.render({ title: `Run ${runId}`, section: paths.runs(), body, refreshSeconds: live ? LIVE_SECONDS : undefined }));
    });

    app.get("/runs/:runId/items", async (c) => {
      const runId = c.req.param("runId");
      const run = await getRun(ctx.db, runId);
      if (!run) return notFound(c, ctx, `No run ${runId} in this store.`);
      const state = c.req.query("status") || undefined;
      const after = c.req.query("after") || undefined;
      const before = after ? undefined : c.req.query("before") || undefined;
      const carried = carriedPairs(recordedReads(run.stages));
      const rows = await itemPage(ctx.db, runId, { after, before, status: state, limit: ITEMS_PER_PAGE }, carried);
      // A link only where there is a page to go to: one item looked up on each side.
      const [earlier, later] = rows.length
        ? await Promise.all([
            itemPage(ctx.db, runId, { before: rows[0]!.item_id, status: state, limit: 1 }, carried),
            itemPage(ctx.db, runId, { after: rows[rows.length - 1]!.item_id, status: state, limit: 1 }, carried),
          ])
        : [[], []];
      const previous = earlier.length ? rows[0]!.item_id : undefined;
      const next = later.length ? rows[rows.length - 1]!.item_id : undefined;
      const rejected = state ? [] : await rejectedRowCounts(ctx.db, runId);
      const body = html`<h1>Items of <a class="mono" href="${paths.run(runId)}">${runId}</a></h1>
        <p class="note">Each item with its status where it ended (the last stage it reached; with branches, not a branch another one carried it past), in id order${state ? html`, only <b>${state}</b> (<a href="${paths.items(runId)}">all</a>)` : ""}.</p>
        <table><tr><th>item</th><th class="num">line</th><th>last stage</th><th>status</th></tr>
        ${rows.map((r) => html`<tr><td><a class="mono" href="${paths.item(runId, r.item_id)}">${r.item_id}</a></td><td class="num">${int(r.line)}</td><td>${r.stage_id ?? "–"}</td><td><a href="${paths.items(runId, { status: r.status })}">${status(r.status)}</a></td></tr>`)}
        </table>
        ${rows.length === 0 ? html`<p class="muted">No items${after ? " after this one" : before ? " before this one" : ""}.</p>` : ""}
        ${previous || next ? html`<p>${previous ? html`<a href="${paths.items(runId, { status: state, before: previous })}">← previous ${String(ITEMS_PER_PAGE)}</a>` : ""}${previous && next ? " · " : ""}${next ? html`<a href="${paths.items(runId, { status: state, after: next })}">next ${String(ITEMS_PER_PAGE)} →</a>` : ""}</p>` : ""}
        ${rejected.length ? html`<p class="note">Rows read that did not become items: ${rejected.map((r, i) => html`${i ? ", " : ""}${int(r.n)} ${r.state}`)}, with why, in <a href="${`${paths.run(runId)}#quarantine`}">the run's report</a>.</p>` : ""}`;
      return c.html(ctx.render({ title: `Items of ${runId}`, section: paths.runs(), body }));
    });
  },
};
