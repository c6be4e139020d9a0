import { startCli } from "./cli.ts";

/** `sluice ui --port 0` as a child process: resolves with its URL once it listens. */
export async function startUi(env: NodeJS.ProcessEnv, args: string[] = []): Promise<{ url: string; stop: () => Promise<void>; stderr: () => string }> {
  const ui = startCli(["ui", "--port", "0", ...args], env);
  const url = await new Promise<string>((resolve, reject) => {
    const look = () => {
      const found = /sluice ui on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(ui.stderrSoFar());
      if (found) {
        ui.child.stderr!.off("data", look);
        resolve(found[1]!);
      }
    };
    ui.child.stderr!.on("data", look);
    void ui.done.then((r) => reject(new Error(`sluice ui exited (${r.code ?? r.signal}) before listening: ${r.stderr}`)));
  });
  return {
    url,
    stderr: ui.stderrSoFar,
    stop: async () => {
      ui.child.kill("SIGTERM");
      const r = await ui.done;
      if (r.code !== 0) throw new Error(`sluice ui exited ${r.code ?? r.signal}: ${r.stderr}`);
    },
  };
}
