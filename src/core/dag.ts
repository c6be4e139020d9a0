/**
 * The graph of a pipeline's stages, by index: stage `i` depends on the
 * stages in `reads[i]` (its `reads`, or every stage before it). Pure; the
 * engine schedules by it and the summary counts by it.
 *
 * An item reaches a stage once every dependency is resolved for it and at
 * least one stage of its **frontier** advanced it. The frontier is the
 * dependencies that are not an ancestor of another dependency: `validate`
 * reading `[classify, billing, bugs]` has the frontier `{billing, bugs}`; a
 * stage without `reads` has the one before it. A stage with no dependency
 * (the first) is reached by every item.
 */

/** Every stage each stage depends on, through any chain of reads. */
export function ancestorsOf(reads: readonly (readonly number[])[]): Set<number>[] {
  const below: Set<number>[] = [];
  reads.forEach((r, i) => {
    const all = new Set<number>();
    for (const d of r) {
      all.add(d);
      for (const a of below[d] ?? []) all.add(a);
    }
    below[i] = all;
  });
  return below;
}

/** The frontier of each stage: its dependencies that no other dependency of it depends on. */
export function frontiersOf(reads: readonly (readonly number[])[]): number[][] {
  const below = ancestorsOf(reads);
  return reads.map((r) => r.filter((d) => !r.some((other) => other !== d && below[other]!.has(d))).sort((a, b) => a - b));
}

/** True when every stage's frontier is the stage before it: a list, run as sluice always ran lists. */
export function isChain(reads: readonly (readonly number[])[]): boolean {
  return frontiersOf(reads).every((f, i) => (i === 0 ? f.length === 0 : f.length === 1 && f[0] === i - 1));
}

/**
 * Pairs `[stopped, other]`: an item that stopped at stage `stopped` (gated
 * out, failed, held for review) and advanced at stage `other` went on along
 * another branch (`other` is neither `stopped` nor one of its ancestors), so
 * it did not end there. Empty for a chain.
 */
export function carriedPairs(reads: readonly (readonly number[])[]): [number, number][] {
  if (isChain(reads)) return [];
  const below = ancestorsOf(reads);
  const pairs: [number, number][] = [];
  reads.forEach((_, s) => {
    reads.forEach((_, t) => {
      if (t !== s && !below[s]!.has(t)) pairs.push([s, t]);
    });
  });
  return pairs;
}

/** The reads a run recorded for its stages (by index); a stage recorded without them read every stage before it. */
export function recordedReads(stages: readonly { index: number; reads?: readonly number[] }[]): number[][] {
  return stages.map((s) => [...(s.reads ?? Array.from({ length: s.index }, (_, i) => i))]);
}

/**
 * The stages in waves: each wave holds the stages whose dependencies are all
 * in earlier waves (wave n: the longest chain of reads below a stage is n).
 * The stages of one wave read nothing of each other. One stage per wave for a chain.
 */
export function wavesOf(reads: readonly (readonly number[])[]): number[][] {
  const depth: number[] = [];
  const waves: number[][] = [];
  reads.forEach((r, i) => {
    depth[i] = r.length === 0 ? 0 : 1 + Math.max(...r.map((d) => depth[d]!));
    (waves[depth[i]!] ??= []).push(i);
  });
  return waves.filter((w) => w !== undefined);
}
