import { definePipeline, type JsonSchema } from "sluice/core";
import { llmClassify, llmExtract, upsertCommit, validateOutputs } from "sluice/stages";
import companySchema from "../schemas/company.schema.json" with { type: "json" };
import decisionSchema from "../schemas/enrichment-decision.schema.json" with { type: "json" };
import profileSchema from "../schemas/company-profile.schema.json" with { type: "json" };
import type { Company, CompanyProfile, EnrichmentDecision } from "../schemas/types.ts";

/** The typed target's row: one column per property. */
const enrichedColumns: JsonSchema = {
  type: "object",
  properties: {
    company_id: { type: "string" },
    name: { type: "string" },
    domain: { type: ["string", "null"] },
    country: { type: ["string", "null"] },
    industry: { type: "string" },
    business_model: { type: "string" },
    employee_count: { type: ["integer", "null"] },
    founded_year: { type: ["integer", "null"] },
    headquarters: { type: ["string", "null"] },
    description: { type: "string" },
    confidence: { type: "number" },
  },
};

// A cheap model reads the record as it stands and says whether it needs enriching.
const triage = llmClassify<Company>({
  id: "triage",
  provider: "anthropic",
  model: "claude-haiku-4-5",
  prompt: {
    system: "You keep a CRM clean. Say `enrich` when a company record's description is missing, vague or stale, or its size is unknown; `skip` when it is complete and current. Give your confidence (0 to 1).",
    user: "Company: {{item.name}} ({{item.domain}})\nEmployees on file: {{item.employees}}\nDescription on file: {{item.description}}\nAccount notes: {{item.notes}}",
  },
  output: { name: "EnrichmentDecision", schema: decisionSchema as JsonSchema },
  params: { temperature: 0, maxTokens: 40 },
});

// A stronger model writes the description and the firmographic fields, only for records that need it.
const enrich = llmExtract<Company>({
  id: "enrich",
  provider: "anthropic",
  model: "claude-sonnet-4",
  when: ({ outputs }) => (outputs.triage as EnrichmentDecision).decision === "enrich",
  reads: ["triage"],
  prompt: {
    system: "Write a one-sentence description of the company for a sales team, and fill in its industry, business model, headcount, founding year and headquarters city. Use null for anything the record does not state.",
    user: "{{item.notes}}\n\nCompany: {{item.name}}\nWebsite: {{item.domain}}\nCountry: {{item.country}}\nDescription on file: {{item.description}}",
  },
  output: { name: "CompanyProfile", schema: profileSchema as JsonSchema },
  params: { temperature: 0, maxTokens: 400 },
});

const thisYear = new Date().getUTCFullYear();

const validate = validateOutputs<Company>({
  id: "validate",
  codeVersion: "1",
  schemas: { enrich: profileSchema as JsonSchema },
  rules: [
    {
      name: "founded in the future",
      severity: "invalid",
      check: ({ outputs }) => {
        const year = (outputs.enrich as CompanyProfile).founded_year;
        return year !== null && year > thisYear ? `founded_year ${year} is after ${thisYear}` : undefined;
      },
    },
    {
      name: "description repeats the name",
      severity: "review",
      check: ({ item, outputs }) => {
        const d = (outputs.enrich as CompanyProfile).description.trim().replace(/\.$/, "");
        return d.toLowerCase() === item.name.toLowerCase() ? "the description says no more than the company's name" : undefined;
      },
    },
    {
      name: "low confidence",
      severity: "review",
      check: ({ outputs }) => {
        const c = (outputs.enrich as CompanyProfile).confidence;
        return c < 0.6 ? `enrichment confidence ${c} is below 0.6` : undefined;
      },
    },
  ],
});

const commit = upsertCommit<Company>({
  id: "commit",
  table: "crm_enriched",
  key: "company_id",
  columns: enrichedColumns,
  codeVersion: "1",
  row: ({ itemId, item, outputs }) => {
    const p = outputs.enrich as CompanyProfile;
    return {
      company_id: itemId,
      name: item.name,
      domain: item.domain ?? null,
      country: item.country ?? null,
      industry: p.industry,
      business_model: p.business_model,
      employee_count: p.employee_count,
      founded_year: p.founded_year,
      headquarters: p.headquarters,
      description: p.description,
      confidence: p.confidence,
    };
  },
});

/**
 * CRM enrichment: read the companies table past its `updated_at` cursor (so a
 * run sees only new and changed records), let a small Anthropic model pick
 * the records that need enriching, have a larger one write a description and
 * firmographic fields for those, validate, and upsert them into the typed
 * table `crm_enriched`. Started by `sluice trigger crm-enrichment`, or by
 * `sluice watch` when new rows arrive.
 */
export default definePipeline({
  id: "crm-enrichment",
  description: "Enrich new and changed CRM company records with a description and firmographics",
  source: { key: "id", table: "crm_companies", cursor: "updated_at", schema: companySchema as JsonSchema },
  onNewRows: true,
  stages: [triage, enrich, validate, commit],
});
