// Many suites spawn `bin/sluice.mjs`, which runs the compiled CLI in dist/:
// compile it first when a source is newer than the last build.
// @ts-expect-error a plain ES module script, without types
import { buildIfStale } from "../scripts/build.mjs";

export default function setup(): void {
  (buildIfStale as () => void)();
}
