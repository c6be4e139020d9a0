import { stableStringify } from "../core/hash.ts";
import type { RunDiff } from "../inspect/diff.ts";
import type { ReasonGroup, RunReport } from "../inspect/report.ts";
import { costChart, failureChart, funnelChart, savingsChart, timeChart, tokenChart } from "./charts.ts";
import { html, int, metric, pct, secs, trusted, usd, type Html } from "./html.ts";
import { STYLES } from "./styles.ts";

/**
 * A run's report as HTML: the body (shared by `sluice report` and the
 * console's run page) and the self-contained document `sluice report`
 * writes. Figures that the run summary holds carry `data-metric`.
 */

export interface ReportLinks {
  /** Where an item id links to (the console's item page); plain text when absent. */
  item?: (itemId: string) => string;
  /** Where a run id links to. */
  run?: (runId: string) => string;
}

const status = (s: string) => html`<span class="status ${s}">${s.replace(/_/g, " ")}</span>`;
const chart = (svg: Html | null, none: string) => (svg ? html`<div class="chart">${svg}</div>` : html`<p class="muted">${none}</p>`);
const link = (href: string | undefined, text: string) => (href ? html`<a href="${href}">${text}</a>` : html`<span class="mono">${text}</span>`);

function header(r: RunReport, links: ReportLinks): Html {
  const s = r.summary;
  // A run that went on after it finished (review decisions, retried dead letters) took until its first finish, not the wait between.
  const first = r.run.firstFinishedAt ?? s.finishedAt;
  const took = first ? (new Date(first).getTime() - new Date(s.startedAt).getTime()) / 1000 : null;
  const again = r.run.firstFinishedAt && s.finishedAt ? html`<span>went on after it finished (review decisions, retries), last ${s.finishedAt.replace("T", " ").slice(0, 19)} UTC</span>` : "";
  const saved = r.savings.gateUsd + r.savings.reuse.usd + r.savings.cache.usd + r.savings.batchDiscountUsd;
  const calls = s.stages.reduce((a, x) => a + x.providerCalls, 0);
  return html`
    <h1>Run <span class="mono">${s.runId}</span> ${status(s.status)}</h1>
    <p class="meta"><span>pipeline <b>${s.pipeline}</b></span><span>${r.run.mode}</span><span>started ${s.startedAt.replace("T", " ").slice(0, 19)} UTC</span>${
      took === null ? html`<span>not finished</span>` : html`<span>took ${secs(took)}</span>${again}`
    }${r.run.inputPath ? html`<span>input <code>${r.run.inputPath}</code></span>` : ""}${
      r.rerun ? html`<span>rerun of ${link(links.run?.(r.rerun.baseRunId), r.rerun.baseRunId)} from stage <b>${r.rerun.stage}</b></span>` : ""
    }</p>
    ${r.run.error ? html`<div class="error">${r.run.error}</div>` : ""}
    <div class="tiles">
      <div class="tile"><div class="label">rows read</div><div class="value">${metric("items.total", s.items.total, int(s.items.total))}</div></div>
      <div class="tile"><div class="label">committed</div><div class="value">${metric("items.byStatus.committed", s.items.byStatus.committed ?? 0, int(s.items.byStatus.committed ?? 0))}</div></div>
      <div class="tile"><div class="label">cost</div><div class="value">${metric("costUsd", s.costUsd, usd(s.costUsd))}</div></div>
      <div class="tile"><div class="label">provider calls</div><div class="value">${int(calls)}</div></div>
      <div class="tile"><div class="label">not spent (gates, reuse, cache, batch)</div><div class="value">${usd(Math.round(saved * 1e6) / 1e6)}</div></div>
    </div>`;
}

function funnel(r: RunReport): Html {
  const s = r.summary;
  const finals = Object.entries(s.items.byStatus).sort((a, b) => b[1] - a[1]);
  return html`
    <h2 id="funnel">Funnel</h2>
    <p class="note">Every row read ends in exactly one state. Per stage: items that went on, were kept out by a gate (or a filter), wait for review, failed for good, or are still to do.</p>
    <figure>${funnelChart(r)}</figure>
    <table>
      <tr><th>stage</th><th class="num">processed</th><th class="num">reused</th><th class="num">passed</th><th class="num">gated out</th><th class="num">review</th><th class="num">failed</th><th class="num">pending</th></tr>
      ${r.funnel.stages.map((f, i) => {
        const st = s.stages[i]!;
        const m = (key: "processed" | "reused" | "gatedOut" | "needsReview" | "failed") => metric(`stages.${st.id}.${key}`, st[key], int(st[key]));
        return html`<tr><td>${f.id} <span class="muted">(${f.kind}, <code>${st.version}</code>)</span></td><td class="num">${m("processed")}</td><td class="num">${m("reused")}</td><td class="num">${int(f.passed)}</td><td class="num">${m("gatedOut")}</td><td class="num">${m("needsReview")}</td><td class="num">${m("failed")}</td><td class="num">${int(f.pending)}</td></tr>`;
      })}
    </table>
    <h3>Final state of every row</h3>
    <table>
      <tr><th>state</th><th class="num">rows</th><th class="num">share</th></tr>
      ${finals.map(([state, n]) => html`<tr><td>${status(state)}</td><td class="num">${metric(`items.byStatus.${state}`, n, int(n))}</td><td class="num">${pct(s.items.total ? n / s.items.total : 0)}</td></tr>`)}
      <tr><td><b>rows read</b></td><td class="num"><b>${int(s.items.total)}</b></td><td></td></tr>
    </table>`;
}

function costs(r: RunReport): Html {
  const s = r.summary;
  const sv = r.savings;
  return html`
    <h2 id="cost">Cost</h2>
    ${chart(costChart(r), "No provider calls in this run: nothing was paid.")}
    <table>
      <tr><th>stage</th><th class="num">calls</th><th class="num">batch calls</th><th class="num">tokens in</th><th class="num">tokens out</th><th class="num">cost</th></tr>
      ${s.stages.map((st) => {
        const m = (key: "providerCalls" | "batchCalls" | "inputTokens" | "outputTokens") => metric(`stages.${st.id}.${key}`, st[key], int(st[key]));
        return html`<tr><td>${st.id}</td><td class="num">${m("providerCalls")}</td><td class="num">${m("batchCalls")}</td><td class="num">${m("inputTokens")}</td><td class="num">${m("outputTokens")}</td><td class="num">${metric(`stages.${st.id}.costUsd`, st.costUsd, usd(st.costUsd))}</td></tr>`;
      })}
      <tr><td><b>total</b></td><td colspan="4"></td><td class="num"><b>${usd(s.costUsd)}</b></td></tr>
    </table>
    ${r.costs.length
      ? html`<h3>By model</h3><table>
          <tr><th>stage</th><th>provider</th><th>model</th><th>mode</th><th class="num">calls</th><th class="num">errors</th><th class="num">tokens in (cached)</th><th class="num">tokens out</th><th class="num">list price</th><th class="num">paid</th></tr>
          ${r.costs.map((c) => html`<tr><td>${c.stage}</td><td>${c.provider}</td><td><code>${c.model}</code></td><td>${c.mode}</td><td class="num">${int(c.calls)}</td><td class="num">${int(c.errors)}</td><td class="num">${int(c.inputTokens)} (${int(c.cachedTokens)})</td><td class="num">${int(c.outputTokens)}</td><td class="num">${usd(c.listCostUsd)}</td><td class="num">${usd(c.costUsd)}</td></tr>`)}
        </table>`
      : ""}
    ${modes(r)}
    <h3 id="savings">What was not spent</h3>
    <figure>${savingsChart(r)}</figure>
    <ul>
      <li>Gates kept items out of paid stages: about ${metric("savings.gateUsd", sv.gateUsd, usd(sv.gateUsd))} (items kept out × what a call of the stage cost in this run, at the batch price where it went by batch).</li>
      <li>Reused model outputs of earlier runs: ${int(sv.reuse.items)} results, ${usd(sv.reuse.usd)} when they were made.</li>
      <li>Request cache and identical requests: ${int(sv.cache.items)} model answers not paid for, about ${usd(sv.cache.usd)} at what an answer of their stage cost (as <code>sluice cost</code> counts them).</li>
      <li>Batch API: ${metric("savings.batchDiscountUsd", sv.batchDiscountUsd, usd(sv.batchDiscountUsd))} below list price.</li>
    </ul>
    <h2 id="tokens">Tokens</h2>
    ${chart(tokenChart(r), "No tokens: no provider calls in this run.")}`;
}

/** Realtime or batch, per model stage, and why (the choice an `auto` stage made, and a switch after a late batch). */
function modes(r: RunReport): Html {
  if (r.modes.length === 0) return html``;
  const deadline = r.summary.deadlineAt ? html` The run's deadline was ${r.summary.deadlineAt.replace("T", " ").slice(0, 19)} UTC.` : "";
  return html`<h3 id="modes">Realtime or batch</h3>
    <p class="note">An <code>auto</code> stage goes through the provider's batch API (half price) when it has enough calls and, with a deadline, the provider's recent batches would come back in time; a batch still running at its cutoff is cancelled, and the rest goes realtime.${deadline}</p>
    <table>
      <tr><th>stage</th><th>mode</th><th>chosen by</th><th>why</th></tr>
      ${r.modes.map(
        (m) => html`<tr data-stage-mode="${m.stage}"><td>${m.stage}</td><td><b>${m.switchedFrom ? `${m.switchedFrom} → ${m.mode}` : m.mode}</b></td><td>${m.chosenBy === "auto" ? "auto" : "the stage's definition"}</td><td>${
          m.reasons.length === 1 ? m.reasons[0] : html`<ol class="reasons">${m.reasons.map((why) => html`<li>${why}</li>`)}</ol>`
        }</td></tr>`,
      )}
    </table>`;
}

function timing(r: RunReport): Html {
  return html`
    <h2 id="time">Time per stage</h2>
    <p class="note">From the run's start to each stage's first and last result. Stages that share a segment work on a chunk one after another, so their spans overlap; call time adds up every provider call, which run many at once.</p>
    ${chart(timeChart(r), "No stage has written a result yet.")}
    <table>
      <tr><th>stage</th><th class="num">first result</th><th class="num">last result</th><th class="num">span</th><th class="num">provider call time (sum)</th></tr>
      ${r.timings.map((t) => html`<tr><td>${t.stage}</td><td class="num">${secs(t.firstS)}</td><td class="num">${secs(t.lastS)}</td><td class="num">${t.firstS === null || t.lastS === null ? "–" : secs(t.lastS - t.firstS)}</td><td class="num">${t.callSeconds ? secs(t.callSeconds) : "–"}</td></tr>`)}
    </table>`;
}

function reasons(groups: ReasonGroup[], links: ReportLinks, what: { empty: string; stage: boolean }): Html {
  if (groups.length === 0) return html`<p class="muted">${what.empty}</p>`;
  return html`<table>
    <tr>${what.stage ? html`<th>stage</th>` : ""}<th>${what.stage ? "class" : "state"}</th><th>reason</th><th class="num">count</th><th>example</th></tr>
    ${groups.map(
      (g) => html`<tr>${what.stage ? html`<td>${g.stage}</td>` : ""}<td>${status(g.kind)}</td><td>${g.reason}</td><td class="num">${int(g.n)}</td><td>${
        what.stage ? link(links.item?.(g.exampleAt), g.exampleAt) : html`<span class="mono">${g.exampleAt}</span>`
      }${g.n > 1 || g.example !== g.reason ? html`<details><summary>message</summary><pre>${g.example}</pre></details>` : ""}</td></tr>`,
    )}
  </table>`;
}

function failures(r: RunReport, links: ReportLinks): Html {
  return html`
    <h2 id="failures">Failures</h2>
    <p class="note">Failed provider attempts by error class, retried ones included: transient errors are retried with backoff, deterministic ones dead-letter at once, quality failures get one repair attempt.</p>
    ${chart(failureChart(r), r.run.error ? `No failed attempt was recorded: the calls cut short when the run stopped are not attempts (${r.run.error}).` : "No attempt failed.")}
    <h3>Dead letters</h3>
    ${reasons(r.failures.deadLetters, links, { empty: "No dead letters.", stage: true })}
    <h2 id="quarantine">Quarantined and deduplicated rows</h2>
    ${reasons(r.quarantine, links, { empty: "Every row read became an item.", stage: false })}`;
}

function moves(table: Record<string, number>): Html {
  const entries = Object.entries(table).sort((a, b) => b[1] - a[1]);
  return entries.length ? html`${entries.map(([k, n], i) => html`${i ? ", " : ""}${k} <b>${int(n)}</b>`)}` : html`<span class="muted">none</span>`;
}

function show(v: unknown): string {
  return v === null || v === undefined ? "(none)" : stableStringify(v);
}

function rerunDiff(diff: RunDiff, links: ReportLinks): Html {
  return html`
    <h2 id="rerun">What changed against ${link(links.run?.(diff.runA), diff.runA)}</h2>
    <p class="note">${int(diff.items.a)} items before, ${int(diff.items.b)} now, ${int(diff.items.common)} in both. Final state changed for ${int(diff.final.changed)}: ${moves(diff.final.transitions)}.</p>
    <table>
      <tr><th>stage</th><th>version</th><th class="num">items</th><th class="num">output changed</th><th class="num">gate changed</th><th class="num">state changed</th></tr>
      ${diff.stages.map((s) => html`<tr><td>${s.id}</td><td><code>${s.versionA === s.versionB ? s.versionB : `${s.versionA ?? "–"} → ${s.versionB ?? "–"}`}</code></td><td class="num">${int(s.items)}</td><td class="num">${int(s.outputChanged)}</td><td class="num">${int(s.gateChanged)}</td><td class="num">${int(s.stateChanged)}</td></tr>`)}
    </table>
    ${diff.stages
      .filter((s) => s.stateChanged || s.outputChanged || s.labels?.some((l) => l.table.length))
      .map(
        (s) => html`<div class="stage"><h3>${s.id}</h3>
        ${s.stateChanged ? html`<p>state: ${moves(s.states)}</p>` : ""}
        ${(s.labels ?? []).filter((l) => l.table.length).map((l) => html`<p><b>${s.id}.${l.field}</b>: ${int(l.same)}/${int(l.compared)} unchanged (${pct(l.agreement)}); ${l.table.slice(0, 8).map((t, i) => html`${i ? ", " : ""}${t.from} → ${t.to} <b>${int(t.count)}</b>`)}${l.table.length > 8 ? html` and ${l.table.length - 8} more` : ""}</p>`)}
        ${s.sample.length
          ? html`<table><tr><th>item</th><th>before</th><th>after</th></tr>${s.sample.map(
              (c) => html`<tr><td>${link(links.item?.(c.itemId), c.itemId)}</td><td>${c.before ? status(c.before.status) : "not reached"}<pre>${c.before ? show(c.before.output) : ""}</pre></td><td>${c.after ? status(c.after.status) : "not reached"}<pre>${c.after ? show(c.after.output) : ""}</pre></td></tr>`,
            )}</table>`
          : ""}
      </div>`,
      )}`;
}

/** The report's sections, for a page of its own or the console's run page. */
export function reportBody(r: RunReport, links: ReportLinks = {}): Html {
  return html`${header(r, links)}${funnel(r)}${costs(r)}${timing(r)}${failures(r, links)}${r.rerun ? rerunDiff(r.rerun.diff, links) : ""}`;
}

/**
 * The report as one self-contained HTML document: inline CSS and SVG, no
 * script, nothing fetched when it opens.
 *
 * @example
 * writeFileSync("report.html", reportDocument(await buildRunReport(db, runId)));
 */
export function reportDocument(r: RunReport, generatedAt = new Date()): string {
  return `<!doctype html>\n${html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice report · ${r.summary.pipeline} · ${r.summary.runId}</title><style>${trusted(STYLES)}</style></head>
<body><header class="top"><span class="brand">sluice</span><span>report</span></header><main>${reportBody(r)}
<footer>Written by <code>sluice report ${r.summary.runId}</code> at ${generatedAt.toISOString().replace("T", " ").slice(0, 19)} UTC.</footer></main></body></html>`}\n`;
}
