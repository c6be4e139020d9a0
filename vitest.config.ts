import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Suites that spawn the CLI run the compiled one: build it when sources changed.
    globalSetup: ["test/global-setup.ts"],
    // Suites spawn CLI processes and open embedded databases; two cores do not
    // reward more parallelism than this.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
