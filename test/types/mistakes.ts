/**
 * A pipeline with the mistakes typed stage outputs exist to catch. Each
 * `@ts-expect-error` line names the mistake and a part of the message `tsc`
 * gives for the line after it: the project's typecheck fails if one of these
 * lines compiles, and `test/types.test.ts` compiles this file without the
 * directives and checks each message.
 */
import { definePipeline } from "sluice/core";
import { stagesFor } from "sluice/stages";
import { Ticket, TicketClassification, TicketFields } from "../../schemas/types.ts";

const { llmClassify, llmExtract, validateOutputs, upsertCommit, functionStage } = stagesFor<Ticket>();

const classify = llmClassify({
  id: "classify",
  model: "gpt-4o-mini",
  prompt: { user: "Subject: {{item.subject}}" },
  output: { name: "TicketClassification", schema: TicketClassification },
});

const extract = llmExtract({
  id: "extract",
  model: "gpt-4o",
  reads: [classify],
  // @ts-expect-error a wrong stage id: Property 'clasify' does not exist on type '{ readonly classify: TicketClassification; }'. Did you mean 'classify'?
  when: ({ outputs }) => outputs.clasify.category === "bug",
  prompt: { user: "{{item.body}}" },
  output: { name: "TicketFields", schema: TicketFields },
});

export const promptTypo = llmExtract({
  id: "prompt-typo",
  model: "gpt-4o",
  reads: [classify],
  // @ts-expect-error a wrong stage id in a prompt: '{ "a prompt slot names nothing this stage reads": "{{outputs.clasify.category}}"; }'
  prompt: { user: "Category: {{outputs.clasify.category}}\n\n{{item.body}}" },
  output: { name: "TicketFields", schema: TicketFields },
});

/** A stage of one's own: its return is what the stages reading it see. */
const urgency = functionStage({
  id: "urgency",
  kind: "map",
  codeVersion: "1",
  reads: [classify],
  run: ({ item, outputs }) => ({ urgent: outputs.classify.category === "bug" && /down|outage/i.test(item.subject), score: outputs.classify.confidence }),
});

export const readsUrgency = upsertCommit({
  id: "urgent-commit",
  table: "urgent",
  key: "ticket_id",
  reads: [urgency],
  // @ts-expect-error a wrong field of a function stage's return: Property 'urgnt' does not exist on type '{ urgent: boolean; score: number; }'. Did you mean 'urgent'?
  row: ({ itemId, outputs }) => ({ ticket_id: itemId, urgent: outputs.urgency.urgnt }),
});

const validate = validateOutputs({
  id: "validate",
  codeVersion: "1",
  reads: [classify, extract],
  rules: [
    {
      name: "a wrong field",
      severity: "review",
      // @ts-expect-error a wrong field: Property 'categroy' does not exist on type 'TicketClassification'. Did you mean 'category'?
      check: ({ outputs }) => (outputs.classify.categroy === "bug" ? "bug" : undefined),
    },
    {
      name: "a field of the wrong type",
      severity: "invalid",
      // @ts-expect-error a field of the wrong type: This comparison appears to be unintentional because the types 'string' and 'number' have no overlap.
      check: ({ outputs }) => (outputs.classify.category === 42 ? "never" : undefined),
    },
    {
      name: "another field of the wrong type",
      severity: "invalid",
      check: ({ outputs }) => {
        // @ts-expect-error a field of the wrong type: Type 'string | null' is not assignable to type 'number'.
        const amount: number = outputs.extract.order_id;
        return amount > 100 ? "too much" : undefined;
      },
    },
  ],
});

const commit = upsertCommit({
  id: "commit",
  table: "mistakes",
  key: "ticket_id",
  // @ts-expect-error reading a later stage: Block-scoped variable 'late' used before its declaration.
  reads: [validate, late],
  row: ({ itemId }) => ({ ticket_id: itemId }),
});

const late = llmExtract({
  id: "late",
  model: "gpt-4o",
  reads: [classify],
  prompt: { user: "{{item.body}}" },
  output: { name: "TicketFields", schema: TicketFields },
});

export const outOfOrder = definePipeline({
  id: "mistakes",
  source: { key: "id", schema: Ticket },
  // @ts-expect-error reading a later stage: is not assignable to type '"stage \"extract\" reads \"classify\", which does not come before it in stages"'.
  stages: [extract, classify, validate],
});

export const byIdOutOfOrder = definePipeline({
  id: "mistakes-by-id",
  source: { key: "id" },
  stages: [
    classify,
    // @ts-expect-error reading a later stage by id: is not assignable to type '"stage \"first\" reads \"second\", which does not come before it in stages"'.
    { id: "first", kind: "map", codeVersion: "1", reads: ["second"], run: () => ({}) },
    { id: "second", kind: "map", codeVersion: "1", run: () => ({}) },
  ],
});

/** Two branches that read only classify, meeting at a validator: an item went through one of them, maybe not this one. */
const billing = llmExtract({ id: "billing", model: "gpt-4o", reads: [classify], prompt: { user: "{{item.body}}" }, output: { name: "TicketFields", schema: TicketFields } });
const bugs = llmExtract({ id: "bugs", model: "gpt-4o", reads: [classify], prompt: { user: "{{item.body}}" }, output: { name: "TicketFields", schema: TicketFields } });

export const branchesMeet = validateOutputs({
  id: "branches-meet",
  codeVersion: "1",
  reads: [classify, billing, bugs],
  rules: [
    {
      name: "a branch read as if every item went through it",
      severity: "review",
      // @ts-expect-error a branch an item may have skipped: 'outputs.billing' is possibly 'undefined'.
      check: ({ outputs }) => (outputs.billing.amount === null ? "no amount" : undefined),
    },
    {
      name: "a branch read with ?., and classify, which every item went through",
      severity: "review",
      check: ({ outputs }) => (outputs.bugs?.severity === "critical" && outputs.classify.confidence < 0.5 ? "unsure" : undefined),
    },
  ],
});

/** After the branches meet, a stage reading the validator and a branch: the branch is still optional, classify is not. */
export const afterMeeting = upsertCommit({
  id: "after-meeting",
  table: "after_meeting",
  key: "ticket_id",
  reads: [classify, billing, bugs, branchesMeet],
  // @ts-expect-error a branch an item may have skipped, after the branches meet: 'outputs.bugs' is possibly 'undefined'.
  row: ({ itemId, outputs }) => ({ ticket_id: itemId, category: outputs.classify.category, severity: outputs.bugs.severity, amount: outputs.billing?.amount ?? null }),
});

export { commit };
