import { definePipeline } from "sluice/core";
import { stagesFor } from "sluice/stages";
import { Ticket, TicketClassification, TicketFields } from "../schemas/types.ts";

/** Categories that need structured fields: only these reach the (more expensive) extract stage. */
export const ACTIONABLE = ["billing", "refund", "bug"] as const;

const { llmClassify, llmExtract, ruleFilter, upsertCommit, validateOutputs } = stagesFor<Ticket>();

const SPAM = /\b(win a free|free iphone|crypto|casino|viagra|click here|limited offer|bitcoin)\b/i;
const AUTOREPLY = /^(out of office|automatic reply|auto-reply|autoreply|abwesenheitsnotiz|réponse automatique)\b/i;

const filter = ruleFilter({
  id: "filter",
  codeVersion: "1",
  rules: [
    { name: "empty body", drops: ({ item }) => (item.body ?? "").trim() === "" },
    { name: "spam", drops: ({ item }) => SPAM.test(`${item.subject} ${item.body ?? ""}`) },
    { name: "auto-reply", drops: ({ item }) => AUTOREPLY.test(item.subject.trim()) },
  ],
});

const classify = llmClassify({
  id: "classify",
  model: "gpt-4o-mini",
  prompt: {
    system: "You triage customer support tickets. Pick exactly one category and say how confident you are (0 to 1).",
    user: "Subject: {{item.subject}}\n\n{{item.body}}",
  },
  output: { name: "TicketClassification", schema: TicketClassification },
  params: { temperature: 0, maxTokens: 50 },
});

const extract = llmExtract({
  id: "extract",
  model: "gpt-4o",
  // Half price through the provider's batch API when enough tickets need it and nobody waits on them.
  mode: "auto",
  reads: [classify],
  when: ({ outputs }) => ACTIONABLE.some((category) => category === outputs.classify.category),
  prompt: {
    system: "Extract the fields of a support ticket. Use null for anything the ticket does not state.",
    user: "Category: {{outputs.classify.category}}\nSubject: {{item.subject}}\n\n{{item.body}}",
  },
  output: { name: "TicketFields", schema: TicketFields },
  params: { temperature: 0, maxTokens: 300 },
});

// Validate and commit name every stage before them, as they read by default, so
// their input hashes (and the work stored under them) stay what they were.
const validate = validateOutputs({
  id: "validate",
  codeVersion: "1",
  reads: [filter, classify, extract],
  schemas: { extract: TicketFields },
  rules: [
    {
      name: "low confidence",
      severity: "review",
      check: ({ outputs }) => {
        const c = outputs.classify.confidence;
        return c < 0.6 ? `classifier confidence ${c} is below 0.6` : undefined;
      },
    },
    {
      name: "refund without order",
      severity: "review",
      check: ({ outputs }) =>
        outputs.classify.category === "refund" && !outputs.extract.order_id
          ? "a refund needs an order id to act on"
          : undefined,
    },
    {
      name: "amount out of range",
      severity: "invalid",
      check: ({ outputs }) => {
        const amount = outputs.extract.amount;
        return amount !== null && (amount < 0 || amount > 100_000) ? `amount ${amount} is outside 0..100000` : undefined;
      },
    },
  ],
});

const commit = upsertCommit({
  id: "commit",
  table: "ticket_triage",
  key: "ticket_id",
  codeVersion: "1",
  reads: [filter, classify, extract, validate],
  row: ({ itemId, item, outputs }) => {
    const c = outputs.classify;
    const f = outputs.extract;
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
  source: { key: "id", schema: Ticket, maxItemBytes: 256 * 1024 },
  stages: [filter, classify, extract, validate, commit],
});
