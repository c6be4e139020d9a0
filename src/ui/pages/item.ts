import { html, int, usd } from "../../report/html.ts";
import { itemAttempts, itemStages, runItem } from "../../store/run-details.ts";
import { getRun } from "../../store/runs.ts";
import type { ConsolePage } from "../context.ts";
import { paths } from "../paths.ts";
import { json, notFound, status, when } from "./common.ts";

/**
 * One item of a run: the input as read, each stage's status, output and the
 * version that made it, and every provider attempt with its cost and the
 * answer the request cache holds. Requests themselves are stored by hash
 * only (their text is the prompt rendered over the input above).
 */
export const itemPage: ConsolePage = {
  routes(app, ctx) {
    app.get("/runs/:runId/items/:itemId", async (c) => {
      const runId = c.req.param("runId");
      const itemId = c.req.param("itemId");
      const run = await getRun(ctx.db, runId);
      const item = run && (await runItem(ctx.db, runId, itemId));
      if (!run || !item) return notFound(c, ctx, `No item ${itemId} in run ${runId}.`);
      const [stages, attempts] = await Promise.all([itemStages(ctx.db, runId, itemId), itemAttempts(ctx.db, runId, itemId)]);
      const cost = attempts.reduce((a, x) => a + x.cost_usd, 0);
      const body = html`<h1>Item <span class="mono">${itemId}</span></h1>
        <p class="meta"><span>run <a class="mono" href="${paths.run(runId)}">${runId}</a></span><span>${run.pipeline}</span><span>line ${int(item.line)}</span><span>${int(attempts.length)} provider attempts</span><span>cost ${usd(Math.round(cost * 1e6) / 1e6)}</span></p>
        <h2>Input</h2><pre>${json(item.data)}</pre>
        <h2>Stages</h2>
        ${run.stages.map((plan) => {
          const w = stages.find((s) => s.stage_index === plan.index);
          const mine = attempts.filter((a) => a.stage_id === plan.id);
          if (!w) return html`<div class="stage"><h3>${plan.id} <span class="muted">(${plan.kind})</span></h3><p class="muted">Not reached.</p></div>`;
          return html`<div class="stage" data-stage="${plan.id}"><h3>${plan.id} <span class="muted">(${plan.kind})</span> ${status(w.status)}</h3>
            <p class="meta"><span>version <code>${w.output_version ?? plan.version}</code></span>${
              w.reused ? html`<span>reused${w.output_run && w.output_run !== runId ? html` from <a class="mono" href="${paths.run(w.output_run)}">${w.output_run}</a>` : " (request cache or an identical request)"}</span>` : ""
            }${w.output_cost ? html`<span>output cost ${usd(w.output_cost)}</span>` : ""}<span>${int(w.attempts)} attempt(s)</span><span>${when(w.updated_at)}</span></p>
            ${w.error_class ? html`<div class="error"><b>${w.error_class}</b>: ${w.error_message ?? ""}</div>` : ""}
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
      return c.html(ctx.render({ title: `Item ${itemId}`, section: paths.runs(), body }));
    });
  },
};
