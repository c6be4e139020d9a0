import { readFileSync } from "node:fs";
import { Command } from "commander";
import { DefinitionError } from "../core/errors.ts";
import { checkTableName, targetColumns } from "../core/target.ts";
import type { JsonSchema } from "../core/types.ts";
import { readSource } from "../sources/index.ts";
import { loadSourceTable } from "../store/sources.ts";
import { CliError, printJson, withStore } from "./common.ts";

export interface TableLoadOptions {
  table: string;
  file: string;
  key: string;
  /** A JSON Schema file of the row: its properties become typed columns, and every row is checked against it. */
  schema: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * `sluice table load`: put rows of a CSV or JSONL file into a table of the
 * store's database, for a pipeline with a table source to read (the CRM
 * example's seed data, or a test's). The table is created with the schema's
 * columns and `updated_at`; a row already there with the same values is left
 * alone, so only new and changed rows move a cursor. A file with a bad row
 * loads nothing.
 */
export async function loadTableCli(options: TableLoadOptions): Promise<{ table: string; rows: number; inserted: number; updated: number }> {
  const bad = checkTableName(options.table);
  if (bad) throw new CliError(bad.replace("target.table", "the table"));
  let schema: JsonSchema;
  try {
    schema = JSON.parse(readFileSync(options.schema, "utf8")) as JsonSchema;
  } catch (err) {
    throw new CliError(`cannot read the schema ${options.schema}: ${(err as Error).message.split("\n")[0]}`);
  }
  let columns;
  try {
    columns = targetColumns(schema, options.key);
  } catch (err) {
    throw new CliError(`schema ${options.schema}: ${(err as DefinitionError).message.replace(/target\.columns|target column/g, "the table")}`);
  }
  const rows: Record<string, unknown>[] = [];
  try {
    for await (const rec of readSource(options.file, { key: options.key, schema })) {
      if (rec.kind === "bad") throw new CliError(`${options.file} line ${rec.line}: ${rec.reason}; nothing loaded`);
      if (rec.kind === "item") rows.push(rec.item);
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`cannot read ${options.file}: ${(err as Error).message.split("\n")[0]}`);
  }
  const result = await withStore(options.env ?? process.env, (db) => loadSourceTable(db, options.table, options.key, columns, rows));
  return { table: options.table, rows: rows.length, ...result };
}

export function tableCommand(): Command {
  const command = new Command("table");
  command
    .command("load")
    .description("create a table from a JSON Schema and upsert a CSV or JSONL file's rows into it by key")
    .argument("<table>", "table name (or schema.table) in the store's database")
    .argument("<file>", "CSV or JSONL file of rows")
    .requiredOption("--key <column>", "the key column")
    .requiredOption("--schema <file>", "JSON Schema of a row: its properties become typed columns")
    .option("--json", "print the counts as one JSON object on the last stdout line")
    .exitOverride()
    .action(async (table: string, file: string, opts: { key: string; schema: string; json?: boolean }) => {
      const result = await loadTableCli({ table, file, ...opts });
      if (opts.json) printJson(result);
      else process.stdout.write(`${result.table}: ${result.rows} row(s) read, ${result.inserted} inserted, ${result.updated} updated, ${result.rows - result.inserted - result.updated} unchanged\n`);
    });
  return command;
}
