import type { StageInput } from "./types.ts";

const SLOT = /\{\{\s*([a-zA-Z0-9_.-]+)\s*\}\}/g;

/**
 * Fill `{{path.to.value}}` slots from a stage input (`item.*`, `outputs.*`,
 * `itemId`). Missing values render as an empty string; objects render as JSON.
 */
export function renderTemplate(template: string, input: StageInput<unknown>): string {
  return template.replace(SLOT, (_, path: string) => {
    let value: unknown = input;
    for (const part of path.split(".")) {
      if (value === null || typeof value !== "object") return "";
      value = (value as Record<string, unknown>)[part];
    }
    if (value === undefined || value === null) return "";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  });
}
