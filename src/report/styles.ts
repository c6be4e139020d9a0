/** The one stylesheet of the report and the console, inlined in every page: no file to fetch. */
export const STYLES = `
:root { color-scheme: light; --fg: #212529; --muted: #6c757d; --line: #dee2e6; --bg: #f8f9fa; --accent: #1971c2; --bad: #c92a2a; --ok: #2b8a3e; --warn: #e67700; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #fff; }
header.top { display: flex; align-items: baseline; gap: 24px; padding: 10px 24px; background: #1c2733; color: #fff; }
header.top a { color: #dbe4ff; text-decoration: none; }
header.top a:hover, header.top a.here { color: #fff; text-decoration: underline; }
header.top .brand { font-weight: 700; font-size: 16px; color: #fff; }
header.top .mode { margin-left: auto; font-size: 12px; color: #adb5bd; }
main { max-width: 1100px; margin: 0 auto; padding: 20px 24px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h1 .mono { font-size: 0.85em; }
h2 { font-size: 17px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; }
p.note, .muted { color: var(--muted); }
p.note { margin: 4px 0 10px; max-width: 80ch; }
a { color: var(--accent); }
td code { white-space: nowrap; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.meta { color: var(--muted); margin: 0 0 12px; }
.meta span + span::before { content: " · "; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px; margin: 14px 0; }
.tile { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; background: var(--bg); }
.tile .label { color: var(--muted); font-size: 12px; }
.tile .value { font-size: 20px; font-weight: 600; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 12px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; font-size: 12px; color: var(--muted); background: var(--bg); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:hover td { background: #f1f3f5; }
.status { display: inline-block; padding: 0 6px; border-radius: 4px; font-size: 12px; background: #e9ecef; white-space: nowrap; }
.status.finished, .status.committed, .status.validated, .status.succeeded_unvalidated { background: #d3f9d8; color: var(--ok); }
.status.failed, .status.failed_terminal, .status.quarantined { background: #ffe3e3; color: var(--bad); }
.status.running, .status.queued, .status.processing, .status.failed_retryable { background: #d0ebff; color: var(--accent); }
.status.approve, .status.edit { background: #d3f9d8; color: var(--ok); }
.status.reject, .status.rejected { background: #ffe3e3; color: var(--bad); }
.status.needs_review { background: #fff3bf; color: var(--warn); }
.status.gated_out, .status.deduplicated { background: #e9ecef; color: var(--muted); }
.error { border-left: 3px solid var(--bad); background: #fff5f5; padding: 6px 10px; margin: 8px 0; }
figure { margin: 8px 0 12px; }
figure svg { max-width: 100%; height: auto; }
.chart { overflow-x: auto; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: var(--bg); border: 1px solid var(--line); border-radius: 4px; padding: 8px 10px; overflow-x: auto; max-height: 360px; margin: 4px 0 8px; font-size: 12.5px; }
details > summary { cursor: pointer; color: var(--accent); }
.bar { display: inline-block; height: 8px; background: var(--accent); border-radius: 2px; vertical-align: middle; }
.progress { display: inline-block; width: 120px; height: 8px; background: #e9ecef; border-radius: 4px; overflow: hidden; vertical-align: middle; }
.progress > span { display: block; height: 100%; background: var(--accent); }
.stage { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; margin: 10px 0; }
.stage h3 { margin: 0 0 4px; }
form.inline { display: inline; }
button { font: inherit; padding: 4px 10px; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 4px; cursor: pointer; }
button.reject { background: #fff; color: var(--bad); border-color: var(--bad); }
button.edit { background: #fff; color: var(--accent); }
.callout { border-left: 3px solid var(--warn); background: #fff9db; padding: 8px 12px; margin: 10px 0; }
.callout pre.command { display: inline-block; margin: 4px 0; padding: 4px 10px; max-height: none; }
.done { border-left: 3px solid var(--ok); background: #ebfbee; padding: 6px 12px; margin: 10px 0; }
.reason { margin: 4px 0 8px; }
.stage .reason { border-left: 3px solid var(--warn); background: #fff9db; padding: 4px 10px; }
a.action { font-weight: 600; margin-left: 8px; }
form.filters, form.decide { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: flex-end; margin: 10px 0; }
form.decide.review-box, div.review-box { display: block; border: 1px solid var(--warn); border-radius: 6px; padding: 10px 14px; background: #fffdf5; }
form.decide .fields { display: flex; flex-wrap: wrap; gap: 8px 16px; margin: 6px 0; }
form.decide .buttons { display: flex; gap: 10px; margin-top: 8px; }
form.bulk { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
label { display: inline-flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 2px; }
label.wide { flex: 1 1 260px; }
label.block { display: flex; margin: 6px 0; }
label code { font-size: 12px; }
input, select, textarea { font: inherit; font-size: 14px; color: var(--fg); padding: 4px 6px; border: 1px solid #ced4da; border-radius: 4px; background: #fff; }
textarea { width: 100%; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
`;
