import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { createConsoleApp, type ConsoleOptions } from "./app.ts";

export interface RunningConsole {
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Serve the console on 127.0.0.1 (never on another interface): `port` 0
 * takes a free one. Resolves once it listens.
 *
 * @example
 * const ui = await startConsole({ db, port: 0 });
 * console.log(ui.url); // http://127.0.0.1:41234/
 * await ui.close();
 */
export async function startConsole(options: ConsoleOptions & { port: number }): Promise<RunningConsole> {
  const app = createConsoleApp(options);
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port: options.port, hostname: "127.0.0.1" }, (info: AddressInfo) => {
      server.off("error", reject);
      resolve({
        url: `http://127.0.0.1:${info.port}/`,
        port: info.port,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            // Browsers keep connections open; they must not hold the store open.
            (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
          }),
      });
    });
    server.once("error", reject);
  });
}
