import type { Context } from "hono";
import { SluiceError } from "../../core/errors.ts";
import { decide, defaultReviewer, listReview, parseEdits } from "../../inspect/review.ts";
import { html, int, type Html } from "../../report/html.ts";
import { reviewCountsByRun, type Decision, type QueueRow } from "../../store/reviews.ts";
import { getRun, requireRun } from "../../store/runs.ts";
import type { ConsoleContext, ConsolePage } from "../context.ts";
import { paths } from "../paths.ts";
import { itemMeta, itemSections, loadItem, type ItemView } from "./item.ts";
import { notFound, status, when } from "./common.ts";

/** Rows of a queue shown on one page; the filter narrows a longer one. */
const SHOWN = 500;
const DECISIONS: readonly Decision[] = ["approve", "reject", "edit"];
const DONE: Record<Decision, string> = { approve: "Approved", reject: "Rejected", edit: "Edited" };

/**
 * The review queue: runs with items waiting, one run's queue (by stage and
 * reason), and one item's review with its input, every stage's output, the
 * reasons and the attempts. With `--allow-writes`, approve, reject or edit
 * it (or, filtered, in bulk) through the same `decide` as `sluice review`;
 * decisions are taken up by `sluice commit <runId>`, which the page names.
 */
export const reviewPage: ConsolePage = {
  nav: { href: paths.review(), label: "Review" },
  routes(app, ctx) {
    app.get("/review", async (c) => {
      const runs = await reviewCountsByRun(ctx.db, 50);
      const body = html`<h1>Review</h1>
        <p class="note">Runs with items a stage sent to review (the validator doubted them, or a model's answer broke its rule): nothing of those is committed until a person decides.</p>
        ${runs.length === 0
          ? html`<p class="muted">Nothing waits for review.</p>`
          : html`<table><tr><th>run</th><th>pipeline</th><th>started</th><th class="num">waiting</th><th class="num">decided, not yet committed</th></tr>
            ${runs.map((r) => html`<tr><td><a class="mono" href="${paths.review(r.run_id)}">${r.run_id}</a></td><td>${r.pipeline}</td><td>${when(r.created_at)}</td><td class="num">${int(r.waiting)}</td><td class="num">${int(r.decided)}</td></tr>`)}</table>`}`;
      return c.html(ctx.render({ title: "Review", section: paths.review(), body }));
    });

    app.get("/runs/:runId/review", async (c) => {
      const runId = c.req.param("runId");
      if (!(await getRun(ctx.db, runId))) return notFound(c, ctx, `No run ${runId} in this store.`);
      return c.html(await queuePage(ctx, runId, { stage: c.req.query("stage"), reason: c.req.query("reason"), by: c.req.query("by") }, doneNote(c)));
    });

    app.get("/runs/:runId/review/:itemId", async (c) => {
      const { runId, itemId } = c.req.param();
      const view = await loadItem(ctx, runId, itemId);
      if (!view) return notFound(c, ctx, `No item ${itemId} in run ${runId}.`);
      return c.html(await itemReviewPage(ctx, view, itemId, { by: c.req.query("by") }, doneNote(c)));
    });

    app.post("/runs/:runId/review/:itemId", async (c) => {
      const { runId, itemId } = c.req.param();
      const view = await loadItem(ctx, runId, itemId);
      if (!view) return notFound(c, ctx, `No item ${itemId} in run ${runId}.`);
      const form = await formOf(c);
      try {
        const decision = decisionOf(form.decision);
        const edits = form.edits.trim() ? parseEdits(form.edits.split(/\r?\n/).filter((l) => l.trim())) : undefined;
        if (edits && decision !== "edit") throw new SluiceError(`fields to set are taken by Edit only: press Edit, or clear them to ${decision} the item as it is`);
        const pipeline = await ctx.pipelineOf?.(await requireRun(ctx.db, runId));
        await decide(ctx.db, runId, decision, [itemId], { by: form.by, note: form.note, edits, pipeline });
        // On to the next item still waiting, so a reviewer walks the queue without going back to it.
        const rest = await listReview(ctx.db, runId);
        const next = rest.find((q) => q.item_id > itemId) ?? rest[0];
        const done = { done: decision, items: itemId, by: form.by };
        return c.redirect(next ? paths.reviewItem(runId, next.item_id, done) : paths.review(runId, done), 303);
      } catch (err) {
        if (!(err instanceof SluiceError)) throw err;
        return c.html(await itemReviewPage(ctx, view, itemId, form, undefined, err.message), 400);
      }
    });

    app.post("/runs/:runId/review", async (c) => {
      const runId = c.req.param("runId");
      if (!(await getRun(ctx.db, runId))) return notFound(c, ctx, `No run ${runId} in this store.`);
      const form = await formOf(c);
      const filter = { stage: form.stage, reason: form.reason };
      try {
        // In bulk only by a filter: a page of "approve everything" is one stray click from harm.
        if (!filter.stage && !filter.reason) throw new SluiceError("choose the items by stage or reason first (or decide them one by one)");
        const decision = decisionOf(form.decision);
        if (decision === "edit") throw new SluiceError("edits are made one item at a time");
        const pipeline = await ctx.pipelineOf?.(await requireRun(ctx.db, runId));
        const decided = await decide(ctx.db, runId, decision, [], { ...filter, by: form.by, note: form.note, pipeline });
        return c.redirect(paths.review(runId, { ...filter, done: decision, items: String(decided.length), by: form.by }), 303);
      } catch (err) {
        if (!(err instanceof SluiceError)) throw err;
        return c.html(await queuePage(ctx, runId, { ...filter, by: form.by }, undefined, err.message), 400);
      }
    });
  },
};

interface ReviewForm {
  decision: string;
  by: string;
  note: string;
  edits: string;
  stage: string;
  reason: string;
}

async function formOf(c: Context): Promise<ReviewForm> {
  const body = await c.req.parseBody();
  const text = (k: string) => (typeof body[k] === "string" ? (body[k] as string) : "");
  return { decision: text("decision"), by: text("by"), note: text("note"), edits: text("edits"), stage: text("stage"), reason: text("reason") };
}

function decisionOf(value: string): Decision {
  if (!(DECISIONS as readonly string[]).includes(value)) throw new SluiceError(`a decision is approve, reject or edit, not "${value}"`);
  return value as Decision;
}

/** What was just decided, from the redirect after a decision. */
function doneNote(c: Context): Html | undefined {
  const done = c.req.query("done");
  if (!done || !(DECISIONS as readonly string[]).includes(done)) return undefined;
  const items = c.req.query("items") ?? "";
  const what = /^\d+$/.test(items) ? `${items} item(s)` : items;
  const by = c.req.query("by");
  return html`<p class="done" role="status">${DONE[done as Decision]} ${what}${by ? ` (by ${by})` : ""}.</p>`;
}

/** How decisions are taken on: the command, since committing runs the pipeline (models, the target), which the console does not. */
function takeOn(ctx: ConsoleContext, runId: string, decided: number): Html {
  if (decided === 0) return html``;
  return html`<div class="callout"><b>${int(decided)} decided, not yet committed.</b> Approved and edited items are committed, and rejected ones end <code>rejected</code>, when the run goes on:
    <pre class="command">sluice commit ${runId}</pre>
    <div class="muted">${ctx.db.kind === "pglite"
      ? "Embedded PGlite takes one process at a time: stop this console first (Ctrl-C), then run it."
      : "It can run while this console is open; the run's page shows it live."}</div></div>`;
}

const verdict = (d: Decision) => html`<span class="status ${d}">${DONE[d].toLowerCase()}</span>`;

function reviewerFields(by: string | undefined, note = ""): Html {
  return html`<label>reviewer <input name="by" required maxlength="100" value="${by || defaultReviewer()}"></label>
    <label class="wide">note <input name="note" maxlength="1000" value="${note}" placeholder="why (kept with the decision)"></label>`;
}

async function queuePage(ctx: ConsoleContext, runId: string, q: { stage?: string; reason?: string; by?: string }, done?: Html, error?: string): Promise<string> {
  const all = await listReview(ctx.db, runId, { decided: true });
  const rows = all.filter((r) => (!q.stage || r.stage_id === q.stage) && (!q.reason || (r.reason ?? "").toLowerCase().includes(q.reason.toLowerCase())));
  const waiting = rows.filter((r) => !r.decision);
  const pending = rows.filter((r) => r.decision && !r.applied);
  const stages = [...new Set(all.map((r) => r.stage_id))];
  const filtered = Boolean(q.stage || q.reason);
  const body = html`<h1>Review queue of <a class="mono" href="${paths.run(runId)}">${runId}</a></h1>
    <p class="note">Items a stage sent to review, with its reason. Open one to see its input, every stage's output and the attempts, and decide it; a decision holds in every later run where what was reviewed is unchanged.</p>
    ${done ?? ""}${error ? html`<div class="error" role="alert">${error}</div>` : ""}
    ${takeOn(ctx, runId, all.filter((r) => r.decision && !r.applied).length)}
    <form class="filters" method="get" action="${paths.review(runId)}">
      <label>stage <select name="stage"><option value="">any</option>${stages.map((s) => html`<option value="${s}" ${s === q.stage ? "selected" : ""}>${s}</option>`)}</select></label>
      <label class="wide">reason contains <input name="reason" value="${q.reason ?? ""}" placeholder="e.g. refund without order"></label>
      <button type="submit">Filter</button>${filtered ? html` <a href="${paths.review(runId)}">clear</a>` : ""}
    </form>
    <p class="meta"><span>${int(waiting.length)} waiting</span><span>${int(pending.length)} decided, not yet committed</span><span>${int(rows.length - waiting.length - pending.length)} decided and taken up</span>${filtered ? html`<span>of ${int(all.length)} in the run</span>` : ""}</p>
    ${ctx.allowWrites && filtered && waiting.length
      ? html`<form class="decide bulk" method="post" action="${paths.review(runId)}">
        <input type="hidden" name="stage" value="${q.stage ?? ""}"><input type="hidden" name="reason" value="${q.reason ?? ""}">
        <b>All ${int(waiting.length)} waiting that match:</b> ${reviewerFields(q.by)}
        <button type="submit" name="decision" value="approve">Approve ${int(waiting.length)}</button>
        <button type="submit" name="decision" value="reject" class="reject">Reject ${int(waiting.length)}</button></form>`
      : ""}
    ${rows.length === 0
      ? html`<p class="muted">${filtered ? "Nothing in review matches." : "Nothing waits for review in this run."}</p>`
      : html`<table class="queue"><tr><th>item</th><th>stage</th><th>reason</th><th>decision</th></tr>
        ${rows.slice(0, SHOWN).map((r) => html`<tr><td><a class="mono" href="${paths.reviewItem(runId, r.item_id, { by: q.by })}">${r.item_id}</a></td><td>${r.stage_id}</td><td>${r.reason ?? ""}</td>
          <td>${r.decision ? html`${verdict(r.decision)} by ${r.reviewer ?? "?"}${r.applied ? html` · taken up: ${status(r.status)}` : ""}` : status("needs_review")}</td></tr>`)}</table>
        ${rows.length > SHOWN ? html`<p class="muted">The first ${int(SHOWN)} of ${int(rows.length)}: filter to narrow them.</p>` : ""}`}`;
  return ctx.render({ title: `Review queue of ${runId}`, section: paths.review(), body });
}

async function itemReviewPage(ctx: ConsoleContext, view: ItemView, itemId: string, form: Partial<ReviewForm>, done?: Html, error?: string): Promise<string> {
  const runId = view.run.id;
  const queue = await listReview(ctx.db, runId, { decided: true });
  const mine = queue.find((q) => q.item_id === itemId);
  const waiting = queue.filter((q) => !q.decision);
  const at = waiting.findIndex((q) => q.item_id === itemId);
  const next = waiting.find((q) => q.item_id > itemId);
  const body = html`<h1>Review <span class="mono">${itemId}</span></h1>
    ${itemMeta(view)}
    <p><a href="${paths.review(runId, { by: form.by })}">← review queue</a> (${int(waiting.length)} waiting${at >= 0 ? `, this is ${at + 1}` : ""})${
      next ? html` · <a href="${paths.reviewItem(runId, next.item_id, { by: form.by })}">next waiting: <span class="mono">${next.item_id}</span> →</a>` : ""
    } · <a href="${paths.item(runId, itemId)}">item page</a></p>
    ${done ?? ""}${error ? html`<div class="error" role="alert">${error}</div>` : ""}
    ${mine ? reviewBox(ctx, runId, itemId, mine, form) : html`<p class="callout">No stage of this run has <span class="mono">${itemId}</span> in review: nothing to decide.</p>`}
    ${takeOn(ctx, runId, queue.filter((q) => q.decision && !q.applied).length)}
    ${itemSections(view)}`;
  return ctx.render({ title: `Review ${itemId}`, section: paths.review(), body });
}

function reviewBox(ctx: ConsoleContext, runId: string, itemId: string, row: QueueRow, form: Partial<ReviewForm>): Html {
  const state = row.decision
    ? html`<p>Decided: ${verdict(row.decision)} by ${row.reviewer ?? "?"}, ${
        row.applied ? html`taken up by the run (now ${status(row.status)})` : html`taken up by <code>sluice commit ${runId}</code>`
      }. A new decision replaces it.</p>`
    : "";
  const reason = html`<p class="reason"><b>${row.stage_id}</b> sent it to review: ${row.reason ?? "(no reason recorded)"}</p>`;
  if (!ctx.allowWrites) {
    return html`<div class="review-box">${reason}${state}<p class="muted">Read-only: decide with <code>sluice review approve|reject ${runId} ${itemId}</code> or <code>sluice review edit ${runId} ${itemId} --set field=value</code>, or start the console with <code>--allow-writes</code>.</p></div>`;
  }
  return html`<form class="decide review-box" method="post" action="${paths.reviewItem(runId, itemId)}">
    ${reason}${state}
    <div class="fields">${reviewerFields(form.by, form.note)}</div>
    <label class="block"><span>fields of the committed row to set, one <code>field=value</code> a line (for Edit; a value is read as JSON when it is JSON)</span>
      <textarea name="edits" rows="3" placeholder="order_id=ORD-1234&#10;amount=12.5">${form.edits ?? ""}</textarea></label>
    <div class="buttons"><button type="submit" name="decision" value="approve">Approve</button>
      <button type="submit" name="decision" value="edit" class="edit">Edit and approve</button>
      <button type="submit" name="decision" value="reject" class="reject">Reject</button></div>
  </form>`;
}
