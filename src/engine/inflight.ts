import type { CompletionResult } from "../providers/types.ts";

/** An answer on its way, or `undefined` once its call failed. */
export type Answer = Promise<CompletionResult | undefined>;

/**
 * Answers of the requests one stage's chunks have sent in this process, by
 * request hash: a chunk that needs a request another chunk is paying for
 * waits for that answer instead of paying again (the reuse rule's third
 * step). The request cache covers what is written, so an answer is kept only
 * as long as a chunk may still miss it there: a chunk `enter`s before it
 * reads the request cache and `leave`s when it is done; an answer written to
 * the cache is `retire`d, and dropped once every chunk that entered before
 * that write has left. What stays is bounded by the chunks in flight, not by
 * the stage's items (keeping every answer until the stage ended held about
 * 1.8 KB per item on Postgres).
 */
export class InflightAnswers {
  private readonly answers = new Map<string, Answer>();
  /** Chunks between their request cache read and their end, by the clock when they entered (ascending, as a Set keeps insertion order). */
  private readonly open = new Set<number>();
  /** Answers written to the request cache, in the order they were: a queue read from `head`. */
  private retired: { hash: string; answer: Answer; at: number }[] = [];
  private head = 0;
  private clock = 0;

  get(hash: string): Answer | undefined {
    return this.answers.get(hash);
  }

  set(hash: string, answer: Answer): void {
    this.answers.set(hash, answer);
  }

  /**
   * The answer another chunk's call of this request got; undefined once no
   * chunk has the request in flight (a call that failed is forgotten, so the
   * next caller makes its own). Others may be waiting for the same failed
   * call: a caller that then sends the request registers it only after
   * looking again, with no await between (`sendBatches`; `executeRealtime`
   * waits inline for that reason).
   */
  async shared(hash: string): Promise<CompletionResult | undefined> {
    for (let pending = this.answers.get(hash); pending; pending = this.answers.get(hash)) {
      const answer = await pending;
      if (answer) return answer;
      this.forget(hash, pending);
    }
    return undefined;
  }

  /** Forget `answer` (its call failed), unless another has taken its place. */
  forget(hash: string, answer: Answer): void {
    if (this.answers.get(hash) === answer) this.answers.delete(hash);
  }

  /** A chunk is about to read the request cache; pass what this returns to `leave`. */
  enter(): number {
    const at = ++this.clock;
    this.open.add(at);
    return at;
  }

  leave(at: number): void {
    this.open.delete(at);
    this.prune();
  }

  /** The answers to these requests are in the request cache now. */
  retire(hashes: Iterable<string>): void {
    for (const hash of hashes) {
      const answer = this.answers.get(hash);
      if (answer) this.retired.push({ hash, answer, at: ++this.clock });
    }
    this.prune();
  }

  /** Answers held (for tests and measurements). */
  get size(): number {
    return this.answers.size;
  }

  private prune(): void {
    // The chunk open longest entered first; with none open, every retired answer can go.
    const oldest = this.open.values().next().value ?? Infinity;
    while (this.head < this.retired.length && this.retired[this.head]!.at < oldest) {
      const { hash, answer } = this.retired[this.head++]!;
      this.forget(hash, answer);
    }
    if (this.head > 1024 && this.head * 2 > this.retired.length) {
      this.retired = this.retired.slice(this.head);
      this.head = 0;
    }
  }
}
