import { definePipeline, type JsonSchema } from "sluice/core";
import { llmClassify, llmExtract, ruleFilter, upsertCommit, validateOutputs } from "sluice/stages";
import classifySchema from "../schemas/classify.schema.json" with { type: "json" };
import extractSchema from "../schemas/extract.schema.json" with { type: "json" };
import ticketSchema from "../schemas/ticket.schema.json" with { type: "json" };
import type { Ticket, TicketClassification, TicketFields } from "../schemas/types.ts";

/** Categories that need structured fields: only these reach the (more expensive) extract stage. */
export const ACTIONABLE = ["billing", "refund", "bug"] as const;

const SPAM = /\b(win a free|free iphone|crypto|casino|viagra|click here|limited offer|bitcoin)\b/i;
const AUTOREPLY = /^(out of office|automatic reply|auto-reply|autoreply|abwesenheitsnotiz|réponse automatique)\b/i;

const filter = ruleFilter<Ticket>({
  id: "filter",
  codeVersion: "1",
  rules: [
    { name: "empty body", drops: ({ item }) => (item.body ?? "").trim() === "" },
    { name: "spam", drops: ({ item }) => SPAM.test(`${item.subject} ${item.body ?? ""}`) },
    { name: "auto-reply", drops: ({ item }) => AUTOREPLY.test(item.subject.trim()) },
  ],
});

const classify = llmClassify<Ticket>({
  id: "classify",
  model: "gpt-4o-mini",
  prompt: {
    system: "You triage customer support tickets. Pick exactly one category and say how confident you are (0 to 1).",
    user: "Subject: {{item.subject}}\n\n{{item.body}}",
  },
  output: { name: "TicketClassification", schema: classifySchema as JsonSchema },
  params: { temperature: 0, maxTokens: 50 },
});

const extract = llmExtract<Ticket>({
  id: "extract",
  model: "gpt-4o",
  // Half price through the provider's batch API when enough tickets need it and nobody waits on them.
  mode: "auto",
  when: ({ outputs }) => ACTIONABLE.includes((outputs.classify as TicketClassification).category as never),
  reads: ["classify"],
  prompt: {
    system: "Extract the fields of a support ticket. Use null for anything the ticket does not state.",
    user: "Category: {{outputs.classify.category}}\nSubject: {{item.subject}}\n\n{{item.body}}",
  },
  output: { name: "TicketFields", schema: extractSchema as JsonSchema },
  params: { temperature: 0, maxTokens: 300 },
});

const validate = validateOutputs<Ticket>({
  id: "validate",
  codeVersion: "1",
  schemas: { extract: extractSchema as JsonSchema },
  rules: [
    {
      name: "low confidence",
      severity: "review",
      check: ({ outputs }) => {
        const c = (outputs.classify as TicketClassification).confidence;
        return c < 0.6 ? `classifier confidence ${c} is below 0.6` : undefined;
      },
    },
    {
      name: "refund without order",
      severity: "review",
      check: ({ outputs }) =>
        (outputs.classify as TicketClassification).category === "refund" && !(outputs.extract as TicketFields).order_id
          ? "a refund needs an order id to act on"
          : undefined,
    },
    {
      name: "amount out of range",
      severity: "invalid",
      check: ({ outputs }) => {
        const amount = (outputs.extract as TicketFields).amount;
        return amount !== null && (amount < 0 || amount > 100_000) ? `amount ${amount} is outside 0..100000` : undefined;
      },
    },
  ],
});

const commit = upsertCommit<Ticket>({
  id: "commit",
  table: "ticket_triage",
  key: "ticket_id",
  codeVersion: "1",
  row: ({ itemId, item, outputs }) => {
    const c = outputs.classify as TicketClassification;
    const f = outputs.extract as TicketFields;
    return {
      ticket_id: itemId,
      customer_email: item.customer_email,
      created_at: item.created_at,
      category: c.category,
      confidence: c.confidence,
      order_id: f.order_id,
      amount: f.amount,
      product: f.product,
      severity: f.severity,
      summary: f.summary,
    };
  },
});

/**
 * Support ticket triage: drop junk by rules, classify every ticket with a small
 * model, extract structured fields only for billing, refund and bug tickets,
 * validate, and upsert into `ticket_triage`.
 */
export default definePipeline({
  id: "ticket-triage",
  description: "Classify support tickets and extract fields from the actionable ones",
  source: { key: "id", schema: ticketSchema as JsonSchema, maxItemBytes: 256 * 1024 },
  stages: [filter, classify, extract, validate, commit],
});
