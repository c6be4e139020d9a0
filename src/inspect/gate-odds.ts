/**
 * A gate's odds for one item, learned from the items an earlier run sent to
 * the same gate. A gate on a model's answer (extract only for billing, refund
 * and bug tickets) is not blind to the item: a ticket about a refund passes
 * where one asking how to export does not. A pipeline-wide pass rate priced
 * over a small or unusual input (a few dozen tickets, another team's queue)
 * is off by however much that input differs from the last run's; the items'
 * own words say more.
 *
 * The odds of an item come from a logistic regression over the words of its
 * text fields (present or not), fitted on the earlier run's items with a
 * penalty that keeps a word seen in a few items from deciding alone, its
 * scores calibrated (Platt scaling) on items held out of the fit: with few
 * items to learn from, or words that say little, the odds stay near the
 * run's pass rate. Items unlike the examples (a short line where the run saw
 * long tickets, words it never saw) are calibrated nowhere: their odds are
 * drawn toward the run's rate by the share of their words the examples lacked,
 * and their few words are not scaled up to weigh more than in any example.
 */

export interface GateExample {
  data: unknown;
  passed: boolean;
}

export interface GateOdds {
  /** The pass rate over all examples. */
  prior: number;
  /** Examples learned from. */
  n: number;
  /** Probability that the gate lets this item through. */
  odds(item: unknown): number;
}

/** Passes over the examples, and the step and L2 penalty of each update. */
const EPOCHS = 40;
const STEP = 1;
const PENALTY = 1e-3;

/**
 * @example
 * const odds = learnGateOdds(await gateOutcomes(db, runId, "extract", 5000));
 * odds.odds({ subject: "Refund for ORD-1", body: "..." }); // 0.93
 */
export function learnGateOdds(examples: readonly GateExample[]): GateOdds {
  const n = examples.length;
  const passes = examples.filter((e) => e.passed).length;
  if (n === 0) return { prior: 0.5, n, odds: () => 0.5 };
  const words = examples.map((e) => wordsOf(e.data));
  // Texts are scaled as if no shorter than the examples' median (see `features`).
  const floor = median(words.map((w) => w.size));
  // How many examples each word was seen in: the odds are only as informed as the share of an item's words seen often.
  const seen = new Map<string, number>();
  for (const w of words) for (const t of w) seen.set(t, (seen.get(t) ?? 0) + 1);
  const docs = words.map((w) => features(w, floor));
  const labels = examples.map((e) => (e.passed ? 1 : 0));
  // A model scores the items it learned from better than it will score new
  // ones: its scores are calibrated on items each fold did not learn from.
  const held: { score: number; y: number }[] = [];
  for (let f = 0; f < FOLDS && n >= FOLDS * 4; f++) {
    const inFold = (i: number) => i % FOLDS === f;
    const score = fit(docs.filter((_, i) => !inFold(i)), labels.filter((_, i) => !inFold(i)));
    docs.forEach((x, i) => inFold(i) && held.push({ score: score(x), y: labels[i]! }));
  }
  const { a, b } = held.length ? platt(held) : { a: 0, b: logit((passes + 0.5) / (n + 1)) };
  const score = fit(docs, labels);
  const prior = logit((passes + 0.5) / (n + 1));
  return {
    prior: passes / n,
    n,
    odds: (item: unknown) => {
      const w = wordsOf(item);
      const z = a * score(features(w, floor)) + b;
      const known = [...w].filter((t) => (seen.get(t) ?? 0) >= MIN_SEEN).length;
      // An item of words no example had gets the run's rate; one whose words
      // were each seen in several, the model's odds; in between, in between (on the log-odds scale).
      const c = w.size ? known / w.size : 0;
      return sigmoid(c * z + (1 - c) * prior);
    },
  };
}

/** Examples a word must have been seen in to count as known to the model. */
const MIN_SEEN = 3;

/** Folds of the cross-validation that calibrates the scores. */
const FOLDS = 5;

/** A logistic regression by stochastic gradient descent with an L2 penalty; returns its score (log-odds). */
function fit(docs: Map<string, number>[], labels: number[]): (x: Map<string, number>) => number {
  const n = docs.length;
  const rate = (labels.reduce((s, y) => s + y, 0) + 0.5) / (n + 1);
  const w = new Map<string, number>();
  let bias = logit(rate);
  const score = (x: Map<string, number>) => {
    let z = bias;
    for (const [t, v] of x) z += (w.get(t) ?? 0) * v;
    return z;
  };
  // A fixed order that is not the input's (ids sorted), the same on every run.
  const order = docs.map((_, i) => i).sort((a, b) => ((a * 2654435761) % 4294967296) - ((b * 2654435761) % 4294967296));
  for (let epoch = 0; epoch < EPOCHS; epoch++) {
    const step = STEP / (1 + epoch / 10);
    for (const i of order) {
      const x = docs[i]!;
      const err = labels[i]! - sigmoid(score(x));
      bias += step * err;
      for (const [t, v] of x) {
        const cur = w.get(t) ?? 0;
        w.set(t, cur + step * (err * v - PENALTY * cur));
      }
    }
  }
  return score;
}

/** Platt scaling: `y ~ sigmoid(a * score + b)` by Newton's method, with the usual smoothed targets. */
function platt(points: { score: number; y: number }[]): { a: number; b: number } {
  const pos = points.filter((p) => p.y === 1).length;
  const neg = points.length - pos;
  const hi = (pos + 1) / (pos + 2);
  const lo = 1 / (neg + 2);
  let a = 1;
  let b = 0;
  for (let it = 0; it < 50; it++) {
    let g1 = 0, g2 = 0, h11 = 1e-9, h12 = 0, h22 = 1e-9;
    for (const p of points) {
      const t = p.y ? hi : lo;
      const q = sigmoid(a * p.score + b);
      const d = q - t;
      const wq = q * (1 - q);
      g1 += d * p.score;
      g2 += d;
      h11 += wq * p.score * p.score;
      h12 += wq * p.score;
      h22 += wq;
    }
    const det = h11 * h22 - h12 * h12;
    if (Math.abs(det) < 1e-12) break;
    const da = (h22 * g1 - h12 * g2) / det;
    const db = (h11 * g2 - h12 * g1) / det;
    a -= da;
    b -= db;
    if (Math.abs(da) + Math.abs(db) < 1e-9) break;
  }
  return { a, b };
}

function logit(p: number): number {
  return Math.log(p / (1 - p));
}

function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : 0;
}

/**
 * An item's words as features, scaled to unit length so a long text weighs no
 * more than a short one, but never scaled as if shorter than `floor` words
 * (the median text the odds were learned from): scaling up a short text
 * (a subject, "Crash log", and a line) would make each of its few words weigh
 * several times what it did in any example, and a word that happened to go
 * with the gate's answer in a few dozen examples ("end") decide alone.
 */
function features(words: Set<string>, floor: number): Map<string, number> {
  const x = new Map<string, number>();
  const n = Math.max(words.size, floor);
  const v = n ? 1 / Math.sqrt(n) : 0;
  for (const t of words) x.set(t, v);
  return x;
}

/** Words of an item's text fields, each present once. */
function wordsOf(data: unknown): Set<string> {
  const words = new Set<string>();
  const visit = (v: unknown) => {
    if (typeof v === "string") {
      for (const m of v.toLowerCase().matchAll(/\p{L}{2,}/gu)) words.add(m[0]);
    } else if (Array.isArray(v)) v.forEach(visit);
    else if (v && typeof v === "object") Object.values(v).forEach(visit);
  };
  visit(data);
  return words;
}
