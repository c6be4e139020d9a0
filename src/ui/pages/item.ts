import { html, int, usd, type Html } from "../../report/html.ts";
import { itemAttempts, itemStages, runItem, type ItemAttemptRow, type ItemStageRow } from "../../store/run-details.ts";
import { getRun, type RunRow } from "../../store/runs.ts";
import type { ConsoleContext, ConsolePage } from "../context.ts";
import { paths } from "../paths.ts";
import { json, notFound, status, when } from "./common.ts";

/** What the item page and the review page show of one item: the item as read, its run, each stage's row and every attempt. */
export interface ItemView {
  run: RunRow;
  item: { line: number; data: unknown };
  stages: ItemStageRow[];
  attempts: ItemAttemptRow[];
}

/** One item of a run as the console shows it, or undefined when the run or the item is not in the store. */
export async function loadItem(ctx: ConsoleContext, runId: string, itemId: string): Promise<ItemView | undefined> {
  const run = await getRun(ctx.db, runId);
  const item = run && (await runItem(ctx.db, runId, itemId));
  if (!run || !item) return undefined;
  const [stages, attempts] = await Promise.all([itemStages(ctx.db, runId, itemId), itemAttempts(ctx.db, runId, itemId)]);
  return { run, item, stages, attempts };
}

/** The line under an item's title: its run, pipeline, line, attempts and cost. */
export function itemMeta(view: ItemView): Html {
  const cost = view.attempts.reduce((a, x) => a + x.cost_usd, 0);
  return html`<p class="meta"><span>run <a class="mono" href="${paths.run(view.run.id)}">${view.run.id}</a></span><span>${view.run.pipeline}</span><span>line ${int(view.item.line)}</span><span>${int(view.attempts.length)} provider attempts</span><span>cost ${usd(Math.round(cost * 1e6) / 1e6)}</span></p>`;
}

/** The item's input, then each stage of the run's plan: status, version, reason, output, and the attempts with their answers. */
export function itemSections(view: ItemView): Html {
  const runId = view.run.id;
  return html`<h2>Input</h2><pre>${json(view.item.data)}</pre>
    <h2>Stages</h2>
    ${view.run.stages.map((plan) => {
      const w = view.stages.find((s) => s.stage_index === plan.index);
      const mine = view.attempts.filter((a) => a.stage_id === plan.id);
      if (!w) return html`<div class="stage"><h3>${plan.id} <span class="muted">(${plan.kind})</span></h3><p class="muted">Not reached.</p></div>`;
      return html`<div class="stage" data-stage="${plan.id}"><h3>${plan.id} <span class="muted">(${plan.kind})</span> ${status(w.status)}</h3>
        <p class="meta"><span>version <code>${w.output_version ?? plan.version}</code></span>${
          w.reused ? html`<span>reused${w.output_run && w.output_run !== runId ? html` from <a class="mono" href="${paths.run(w.output_run)}">${w.output_run}</a>` : " (within the run: the request cache or an identical request, or a review decision taken on again)"}</span>` : ""
        }${w.output_cost ? html`<span>output cost ${usd(w.output_cost)}</span>` : ""}<span>${int(w.attempts)} attempt(s)</span><span>${when(w.updated_at)}</span></p>
        ${w.error_class ? html`<div class="error"><b>${w.error_class}</b>: ${w.error_message ?? ""}</div>` : w.error_message ? html`<div class="reason">${w.error_message}</div>` : ""}
        ${w.output !== null && w.output !== undefined ? html`<pre>${json(w.output)}</pre>` : ""}
        ${mine.length
          ? html`<table><tr><th class="num">#</th><th>model</th><th>mode</th><th>request hash</th><th class="num">tokens in/out</th><th class="num">latency</th><th class="num">cost</th><th>result</th></tr>
            ${mine.map((a) => html`<tr><td class="num">${String(a.attempt)}</td><td>${a.provider ?? "–"} <code>${a.model ?? ""}</code></td><td>${a.mode ?? "–"}</td><td><code>${a.request_hash?.slice(0, 16) ?? "–"}</code></td>
              <td class="num">${int(a.input_tokens)}/${int(a.output_tokens)}</td><td class="num">${int(a.latency_ms)} ms</td><td class="num">${usd(a.cost_usd)}</td>
              <td>${a.error_class ? html`<span class="status failed">${a.error_class}</span> ${a.error_message ?? ""}` : html`<span class="status committed">answered</span>`}${
                a.response ? html`<details><summary>response</summary><pre>${json(a.response)}</pre></details>` : ""
              }</td></tr>`)}
          </table>`
          : ""}
      </div>`;
    })}`;
}

/**
 * One item of a run: the input as read, each stage's status, output and the
 * version that made it, and every provider attempt with its cost and the
 * answer the request cache holds. Requests themselves are stored by hash
 * only (their text is the prompt rendered over the input above). An item a
 * stage sent to review links to its review.
 */
export const itemPage: ConsolePage = {
  routes(app, ctx) {
    app.get("/runs/:runId/items/:itemId", async (c) => {
      const runId = c.req.param("runId");
      const itemId = c.req.param("itemId");
      const view = await loadItem(ctx, runId, itemId);
      if (!view) return notFound(c, ctx, `No item ${itemId} in run ${runId}.`);
      const inReview = view.stages.find((s) => s.status === "needs_review");
      const body = html`<h1>Item <span class="mono">${itemId}</span></h1>
        ${itemMeta(view)}
        ${inReview
          ? html`<p class="callout">Waits for review at <b>${inReview.stage_id}</b>: ${inReview.error_message ?? ""}
            <a class="action" href="${paths.reviewItem(runId, itemId)}">Review this item</a> · <a href="${paths.review(runId)}">the run's review queue</a></p>`
          : ""}
        ${itemSections(view)}`;
      return c.html(ctx.render({ title: `Item ${itemId}`, section: paths.runs(), body }));
    });
  },
};
