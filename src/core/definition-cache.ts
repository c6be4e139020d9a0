/**
 * Caches keyed by a stage's definition objects (its output schema, its
 * params), for work done per item with them: the schema's checker, its text
 * in request hashes. A definition does not change during a run (its stage
 * version is fixed when the run is planned), but a long-lived process may
 * edit one between runs, so entries are trusted only until the next plan.
 */
let generation = 0;

/** Called whenever stages are planned: entries made before are recomputed on next use. */
export function definitionsRead(): void {
  generation++;
}

export function byDefinition<V>(cache: WeakMap<object, { generation: number; value: V }>, key: object, compute: () => V): V {
  const hit = cache.get(key);
  if (hit && hit.generation === generation) return hit.value;
  const value = compute();
  cache.set(key, { generation, value });
  return value;
}
