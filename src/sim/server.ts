import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { AnthropicBatches } from "./anthropic-batch.ts";
import { anthropicError, handleCountTokens, handleMessages } from "./anthropic.ts";
import { defaultSimConfig, mergeConfig, type SimConfig, type SimConfigPatch } from "./config.ts";
import { BodyTooLarge, readBody, sendJson } from "./http.ts";
import { OpenAIBatches } from "./openai-batch.ts";
import { honestAnswer } from "./model.ts";
import { handleChat, openaiError } from "./openai.ts";
import { SimState } from "./state.ts";
import type { SimStats } from "./stats.ts";

export interface SimulatorOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Defaults to 127.0.0.1: the simulator is for loopback use. */
  host?: string;
  config?: SimConfigPatch;
  /** Overrides `config.seed`. */
  seed?: number;
  /**
   * Keep the per-request stats (by request hash and custom id) that tests read
   * to prove nothing was paid twice; on by default. They take a few hundred
   * bytes per distinct request for as long as the simulator runs, so the
   * CLI's built-in simulator, which nobody asks for them, goes without: its
   * memory then stays flat however many calls a run makes.
   */
  requestStats?: boolean;
}

export interface Simulator {
  /** `http://host:port`, no trailing slash. */
  url: string;
  port: number;
  /** For the OpenAI SDK: `${url}/v1`. */
  openaiBaseURL: string;
  /** For the Anthropic SDK: `url`. */
  anthropicBaseURL: string;
  stats(): SimStats;
  /** Zero the stats and per-request attempt counters, and refill the rate-limit buckets. */
  reset(): void;
  configure(patch: SimConfigPatch): void;
  readonly config: SimConfig;
  close(): Promise<void>;
}

type Provider = "openai" | "anthropic";

function providerOf(path: string): Provider {
  return path.startsWith("/v1/messages") ? "anthropic" : "openai";
}

function fail(res: ServerResponse, provider: Provider, status: number, type: string, message: string): void {
  if (provider === "anthropic") sendJson(res, status, anthropicError(type, message));
  else sendJson(res, status, openaiError(message, type === "api_error" ? "server_error" : type));
}

/**
 * Start the provider simulator: OpenAI's and Anthropic's wire protocols on
 * loopback, close enough that the official SDKs work against it through
 * `baseURL`.
 *
 * @example
 * const sim = await startSimulator({ config: { limits: { "*": { rpm: 600 } } } });
 * const openai = new OpenAI({ apiKey: "sk-sim", baseURL: sim.openaiBaseURL, maxRetries: 0 });
 * // ...
 * await sim.close();
 */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  let config = mergeConfig(defaultSimConfig, options.config ?? {});
  if (options.seed !== undefined) config = { ...config, seed: options.seed };
  const state = new SimState(config, { requestStats: options.requestStats ?? true });
  // The tokenizer builds its tables on first use; pay that now, not inside the first client's timeout.
  honestAnswer({ model: "warm-up", text: "warm up", schema: { type: "object", properties: { a: { type: "string" } } } });
  const openaiBatches = new OpenAIBatches(state);
  const anthropicBatches = new AnthropicBatches(state);

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? "GET";
    const path = (req.url ?? "/").split("?")[0]!.replace(/\/+$/, "") || "/";
    const query = new URL(req.url ?? "/", "http://sim").searchParams;
    const origin = `http://${req.headers.host ?? `${host}:${port}`}`;

    if (path.startsWith("/_sim/")) return control(req, res, method, path);

    const provider = providerOf(path);
    if (!req.headers["x-api-key"] && !req.headers.authorization) {
      if (provider === "anthropic") return fail(res, provider, 401, "authentication_error", "x-api-key header is required");
      return fail(res, provider, 401, "invalid_request_error", "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
    }
    const presented = String(req.headers["x-api-key"] ?? req.headers.authorization ?? "").replace(/^Bearer\s+/i, "");
    if (state.config.revokedKeys.includes(presented)) {
      state.stats.refuseKey();
      if (provider === "anthropic") return fail(res, provider, 401, "authentication_error", `invalid x-api-key: ${presented} has been revoked`);
      return fail(res, provider, 401, "invalid_request_error", `Incorrect API key provided: ${presented}. You can find your API key at https://platform.openai.com/account/api-keys.`);
    }
    // An upload is streamed to disk, not read into memory first.
    if (method === "POST" && path === "/v1/files") return openaiBatches.createFile(req, res);
    const raw = method === "POST" ? await readBody(req) : Buffer.alloc(0);
    let body: unknown;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        const msg =
          provider === "anthropic"
            ? "There was an error parsing the body of your request: it is not valid JSON."
            : "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)";
        return fail(res, provider, 400, "invalid_request_error", msg);
      }
    }
    switch (`${method} ${path}`) {
      case "POST /v1/chat/completions":
        return handleChat(state, res, body);
      case "POST /v1/messages":
        return handleMessages(state, res, body);
      case "POST /v1/messages/count_tokens":
        return handleCountTokens(state, res, body);
      case "POST /v1/batches":
        return openaiBatches.createBatch(res, body);
      case "POST /v1/messages/batches":
        return anthropicBatches.create(res, body, origin);
      case "GET /v1/messages/batches":
        return anthropicBatches.list(res, query, origin);
      case "GET /v1/batches":
        return openaiBatches.listBatches(res, query);
    }
    const mb = /^\/v1\/messages\/batches\/([^/]+)(\/results|\/cancel)?$/.exec(path);
    if (mb) {
      const batchId = decodeURIComponent(mb[1]!);
      if (method === "GET" && !mb[2]) return anthropicBatches.retrieve(res, batchId, origin);
      if (method === "GET" && mb[2] === "/results") return anthropicBatches.results(res, batchId);
      if (method === "POST" && mb[2] === "/cancel") return anthropicBatches.cancel(res, batchId, origin);
      if (method === "DELETE" && !mb[2]) return anthropicBatches.remove(res, batchId);
    }
    const mo = /^\/v1\/(files|batches)\/([^/]+)(\/content|\/cancel)?$/.exec(path);
    if (mo) {
      const [, kind, rawId, sub] = mo;
      const id = decodeURIComponent(rawId!);
      const op = `${method} ${kind}${sub ?? ""}`;
      if (op === "GET files") return openaiBatches.getFile(res, id);
      if (op === "GET files/content") return openaiBatches.fileContent(res, id);
      if (op === "DELETE files") return openaiBatches.deleteFile(res, id);
      if (op === "GET batches") return openaiBatches.getBatch(res, id);
      if (op === "POST batches/cancel") return openaiBatches.cancelBatch(res, id);
    }
    if (provider === "anthropic") return fail(res, provider, 404, "not_found_error", `Not found: ${method} ${path}`);
    fail(res, provider, 404, "invalid_request_error", `Invalid URL (${method} ${path})`);
  }

  async function control(req: IncomingMessage, res: ServerResponse, method: string, path: string): Promise<void> {
    if (method === "GET" && path === "/_sim/stats") return sendJson(res, 200, state.stats.snapshot());
    if (method === "GET" && path === "/_sim/config") return sendJson(res, 200, state.config);
    if (method === "GET" && path === "/_sim/health") return sendJson(res, 200, { ok: true });
    if (method === "POST" && path === "/_sim/reset") {
      state.reset();
      return sendJson(res, 200, { ok: true });
    }
    if (method === "POST" && path === "/_sim/config") {
      try {
        const patch = JSON.parse((await readBody(req)).toString("utf8") || "{}") as SimConfigPatch;
        return sendJson(res, 200, state.configure(patch));
      } catch (err) {
        return sendJson(res, 400, { error: { message: (err as Error).message } });
      }
    }
    sendJson(res, 404, { error: { message: `no simulator control route ${method} ${path}` } });
  }

  const server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      if (err instanceof BodyTooLarge) return fail(res, providerOf(req.url ?? ""), 413, "request_too_large", err.message);
      fail(res, providerOf(req.url ?? ""), 500, "api_error", `simulator error: ${(err as Error).message}`);
    });
  });
  // Clients hold connections open between calls; keep them usable well past a
  // benchmark's think time.
  server.keepAliveTimeout = 65_000;
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;

  return {
    url,
    port,
    openaiBaseURL: `${url}/v1`,
    anthropicBaseURL: url,
    stats: () => state.stats.snapshot(),
    reset: () => state.reset(),
    configure: (patch) => void state.configure(patch),
    get config() {
      return state.config;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const timer of state.held) clearTimeout(timer);
        state.held.clear();
        server.close((err) => {
          openaiBatches.close();
          if (err) reject(err);
          else resolve();
        });
        server.closeAllConnections();
      }),
  };
}
