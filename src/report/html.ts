import { html as honoHtml, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";

/**
 * HTML as escaped strings: every value interpolated into `html` is escaped
 * unless it is itself `html` (or `trusted`, for the SVG the chart library
 * draws). Pages are built from these synchronously; nothing here awaits.
 */
export type Html = HtmlEscapedString;

/**
 * @example
 * html`<td>${item.subject}</td>`; // "<td>&lt;b&gt;refund&lt;/b&gt;</td>" for a subject "<b>refund</b>"
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  const out = honoHtml(strings, ...values);
  if (out instanceof Promise) throw new TypeError("html: a value was a promise; pages are rendered synchronously");
  return out;
}

/** Markup made by code, not by data (the chart library's SVG): inserted as it is. */
export function trusted(markup: string): Html {
  return raw(markup);
}

export const int = (n: number) => n.toLocaleString("en-US");

/**
 * Dollars exactly as the run summary holds them (rounded to a millionth),
 * with at least two decimals: `$0.209332`, `$12.50`.
 */
export function usd(n: number): string {
  const fixed = n.toFixed(6).replace(/0+$/, "");
  const [whole, frac = ""] = fixed.split(".");
  return `$${Number(whole).toLocaleString("en-US")}.${frac.padEnd(2, "0")}`;
}

export const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

export function secs(s: number | null): string {
  if (s === null) return "–";
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

/**
 * A figure from the run summary, marked with its path in the summary
 * (`data-metric="stages.extract.costUsd"`) and exact value, so a test can
 * hold the page to `sluice status <runId> --json`.
 */
export function metric(path: string, value: number, text: string): Html {
  return html`<span data-metric="${path}" data-value="${String(value)}">${text}</span>`;
}
