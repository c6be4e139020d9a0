/** What a fault-injecting simulator can do to one request or batch. */
export type FaultKind =
  | "rate_limit"
  | "server_error"
  | "overloaded"
  | "timeout"
  | "connection_reset"
  | "malformed_json"
  | "truncated"
  | "refusal"
  | "wrong_answer"
  | "batch_request_error"
  | "batch_expired";

/**
 * Counters that tests and benchmarks read to prove what the simulated provider
 * saw and billed (for example: no successful request was paid for twice).
 * A "call" is one model request that reached the simulator with a valid body,
 * realtime or inside a batch; "billed" is one that got an answer with usage
 * (including malformed, truncated and refused answers: providers charge for those).
 */
export interface SimStats {
  calls: number;
  realtimeCalls: number;
  batchCalls: number;
  billed: number;
  /** 429s from the rate-limit buckets (injected 429s are under `faults.rate_limit`). */
  rejected: number;
  /** Requests refused with a 401 for a revoked key (never billed). */
  unauthorized: number;
  /**
   * Realtime requests billed whose client went away before the answer was
   * sent (a killed process): paid for, and lost. After a kill, these are the
   * calls a resumed run may have to pay for again.
   */
  cutOff: number;
  /** The request hashes of those answers. */
  cutOffByRequestHash: Record<string, number>;
  callsByModel: Record<string, number>;
  callsByRequestHash: Record<string, number>;
  billedByRequestHash: Record<string, number>;
  /** Requests billed more than once: how each billing came (`realtime` or `batch:<batch id>`), in order. */
  billedAgainHow: Record<string, string[]>;
  /** Batch requests processed, by `custom_id`. */
  callsByCustomId: Record<string, number>;
  rejectedByModel: Record<string, number>;
  tokens: { input: number; output: number; batchInput: number; batchOutput: number };
  faults: Partial<Record<FaultKind, number>>;
  batches: { created: number; requests: number; completed: number; expired: number; cancelled: number; failed: number };
}

function bump(map: Map<string, number>, key: string, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

/**
 * The mutable side of `SimStats`: cheap to update on every request. Without
 * `byRequest`, only the totals are kept: the maps by request hash and custom
 * id stay empty.
 */
export class StatsRecorder {
  private readonly byRequest: boolean;
  private calls = 0;
  private realtimeCalls = 0;
  private batchCalls = 0;
  private billed = 0;
  private rejected = 0;
  private unauthorized = 0;
  private cutOff = 0;
  private readonly cutOffByHash = new Map<string, number>();
  private readonly byModel = new Map<string, number>();
  private readonly byHash = new Map<string, number>();
  private readonly billedByHash = new Map<string, number>();
  private readonly billedHow = new Map<string, string[]>();
  private readonly byCustomId = new Map<string, number>();
  private readonly rejectedByModel = new Map<string, number>();
  private readonly faults = new Map<string, number>();
  private tokens = { input: 0, output: 0, batchInput: 0, batchOutput: 0 };
  private batches = { created: 0, requests: 0, completed: 0, expired: 0, cancelled: 0, failed: 0 };

  constructor({ byRequest = true }: { byRequest?: boolean } = {}) {
    this.byRequest = byRequest;
  }

  call(model: string, hash: string, customId?: string): void {
    this.calls++;
    if (customId === undefined) this.realtimeCalls++;
    else {
      this.batchCalls++;
      if (this.byRequest) bump(this.byCustomId, customId);
    }
    bump(this.byModel, model);
    if (this.byRequest) bump(this.byHash, hash);
  }

  bill(hash: string, input: number, output: number, batch: boolean, how = batch ? "batch" : "realtime"): void {
    this.billed++;
    if (this.byRequest) {
      bump(this.billedByHash, hash);
      // Kept for every request (most are billed once), reported only for those billed again.
      const ways = this.billedHow.get(hash);
      if (ways) ways.push(how);
      else this.billedHow.set(hash, [how]);
    }
    this.tokens.input += input;
    this.tokens.output += output;
    if (batch) {
      this.tokens.batchInput += input;
      this.tokens.batchOutput += output;
    }
  }

  reject(model: string): void {
    this.rejected++;
    bump(this.rejectedByModel, model);
  }

  /** A billed answer that could not be delivered: its client had gone. */
  cutOffAnswer(hash: string): void {
    this.cutOff++;
    if (this.byRequest) bump(this.cutOffByHash, hash);
  }

  /** A request refused for its key. */
  refuseKey(): void {
    this.unauthorized++;
  }

  fault(kind: FaultKind, by = 1): void {
    bump(this.faults, kind, by);
  }

  batchCreated(requests: number): void {
    this.batches.created++;
    this.batches.requests += requests;
  }

  batchEnded(how: "completed" | "expired" | "cancelled" | "failed"): void {
    this.batches[how]++;
  }

  snapshot(): SimStats {
    const obj = (m: Map<string, number>) => Object.fromEntries(m);
    return {
      calls: this.calls,
      realtimeCalls: this.realtimeCalls,
      batchCalls: this.batchCalls,
      billed: this.billed,
      rejected: this.rejected,
      unauthorized: this.unauthorized,
      cutOff: this.cutOff,
      cutOffByRequestHash: obj(this.cutOffByHash),
      callsByModel: obj(this.byModel),
      callsByRequestHash: obj(this.byHash),
      billedByRequestHash: obj(this.billedByHash),
      billedAgainHow: Object.fromEntries([...this.billedHow].filter(([, ways]) => ways.length > 1)),
      callsByCustomId: obj(this.byCustomId),
      rejectedByModel: obj(this.rejectedByModel),
      tokens: { ...this.tokens },
      faults: obj(this.faults) as SimStats["faults"],
      batches: { ...this.batches },
    };
  }
}
