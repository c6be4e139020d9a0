import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generateTypes } from "../scripts/generate-types.ts";

describe("schemas are the single source of types", () => {
  it("schemas/types.ts is what the generator makes from schemas/*.schema.json (run npm run gen:types)", async () => {
    const dir = join(import.meta.dirname, "..", "schemas");
    expect(readFileSync(join(dir, "types.ts"), "utf8")).toBe(await generateTypes(dir));
  });
});
