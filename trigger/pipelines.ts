import type { PipelineDef } from "sluice/core";
import crmEnrichment from "../pipelines/crm-enrichment.ts";
import ticketTriage from "../pipelines/ticket-triage.ts";

/**
 * Every pipeline in `pipelines/`, imported statically: the Trigger.dev bundler
 * only includes what it can see imported, so a pipeline added there needs a
 * line here too (test/trigger/entry.test.ts fails until it has one).
 */
export const PIPELINES: PipelineDef[] = [crmEnrichment, ticketTriage];
