import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Suites that spawn the CLI run the compiled one: build it when sources changed.
    globalSetup: ["test/global-setup.ts"],
    // Suites spawn CLI processes, wait on Postgres and on timers (a deadline's
    // polls): with two workers, two cores were busy 1.5 of the time.
    maxWorkers: 3,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
