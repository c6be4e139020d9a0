import { defineConfig } from "vitest/config";
import LongestFirst from "./test/sequencer.ts";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Suites that spawn the CLI run the compiled one: build it when sources changed.
    globalSetup: ["test/global-setup.ts"],
    // Suites spawn CLI processes, wait on Postgres and on timers (a deadline's
    // polls): with three workers, two cores were busy 1.67 of the time.
    maxWorkers: 4,
    // A worker runs its files one after another in one process, not each in a
    // new one: the modules, and the in-memory PGlite store every store test
    // copies (src/store/pglite), are loaded once per worker instead of once
    // per file: the suite took a fifth less CPU time. A test file that changes
    // the process's environment puts it back.
    isolate: false,
    // The CLI runs embedded PGlite on V8's baseline WebAssembly compiler alone
    // for its brief commands and its small runs (`baselineWebAssemblyOnly`
    // in src/cli/common.ts), and every test's input is small: the suites run
    // the CLI's functions in their workers the same way. A PGlite opened
    // without it costs about 0.35 s more CPU time (0.9 s against 0.56 s).
    execArgv: ["--liftoff-only"],
    sequence: { sequencer: LongestFirst },
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
