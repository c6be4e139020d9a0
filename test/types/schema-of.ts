import type { JsonSchema, Schema } from "../../src/core/types.ts";

/** A schema written in a test, typed by hand: what `schemas/types.ts` generates for files in `schemas/`. */
export const schemaOf = <T>(schema: JsonSchema): Schema<T> => schema;
