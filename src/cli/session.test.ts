import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { databaseFolder, engineOptionsFromEnv, journalDirFor } from "./session.ts";

describe("engineOptionsFromEnv", () => {
  it("takes whole numbers of 1 or more, and refuses anything else with the variable and its value", () => {
    expect(engineOptionsFromEnv({ SLUICE_CONCURRENCY: "8", SLUICE_CHUNK_SIZE: " 250 ", SLUICE_OUTAGE_LIMIT_MS: "60000", SLUICE_MAX_ATTEMPTS: "" })).toMatchObject({ concurrency: 8, chunkSize: 250, outageLimitMs: 60_000 });
    expect(engineOptionsFromEnv({}).concurrency).toBeUndefined();
    for (const [name, value] of [["SLUICE_CONCURRENCY", "abc"], ["SLUICE_CONCURRENCY", "1.5"], ["SLUICE_CHUNK_SIZE", "2.5"], ["SLUICE_MAX_ATTEMPTS", "0"], ["SLUICE_LEASE_MS", "-5"]] as const) {
      expect(() => engineOptionsFromEnv({ [name]: value })).toThrow(`${name} is a whole number of 1 or more, got "${value}"`);
    }
  });
});

describe("journalDirFor", () => {
  it("gives each Postgres database a journal folder of its own, named without its credentials", () => {
    const a = journalDirFor({ DATABASE_URL: "postgres://ana:s3cret-pw@db.internal:6543/warehouse" });
    const b = journalDirFor({ DATABASE_URL: "postgres://ana:s3cret-pw@db.internal:6543/staging" });
    expect(a).toBe(join(process.cwd(), ".sluice", "journal", "db.internal-6543-warehouse"));
    expect(b).not.toBe(a);
    expect(a + b).not.toMatch(/ana|s3cret/);
    expect(journalDirFor({ DATABASE_URL: "postgresql://127.0.0.1/sluice" })).toBe(join(process.cwd(), ".sluice", "journal", "127.0.0.1-5432-sluice"));
  });

  it("keeps the embedded store's journal beside it, and an explicit folder as given", () => {
    expect(journalDirFor({ SLUICE_DATA_DIR: "/data/project/.sluice/pglite" })).toBe("/data/project/.sluice/journal");
    expect(journalDirFor({})).toBe(join(process.cwd(), ".sluice", "journal"));
    expect(journalDirFor({ SLUICE_JOURNAL_DIR: "/var/sluice/j", DATABASE_URL: "postgres://h/db" })).toBe("/var/sluice/j");
  });

  it("names a folder safely whatever the URL holds", () => {
    expect(databaseFolder("postgres:///my db?host=/var/run/postgresql")).toBe("_var_run_postgresql-5432-my_db");
    expect(databaseFolder("host=localhost dbname=x")).toBe("postgres");
  });
});
