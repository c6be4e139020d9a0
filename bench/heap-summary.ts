/**
 * What a heap snapshot holds, by kind: strings, arrays, compiled code, and
 * objects by constructor, with their self sizes, largest first. Enough to say
 * whether what is left after a run grows with its items (objects by the
 * hundred thousand) or is the process's fixed cost (modules, code, tables).
 */
import { readFileSync } from "node:fs";

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

export interface HeapShare {
  kind: string;
  count: number;
  mb: number;
}

export function summarizeHeap(path: string, top = 8): { totalMb: number; shares: HeapShare[] } {
  const snap = JSON.parse(readFileSync(path, "utf8")) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const [type, name, size] = ["type", "name", "self_size"].map((f) => fields.indexOf(f)) as [number, number, number];
  const by = new Map<string, { count: number; bytes: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const t = types[snap.nodes[i + type]!]!;
    const bytes = snap.nodes[i + size]!;
    total += bytes;
    const kind = t === "object" || t === "closure" ? `${t} ${snap.strings[snap.nodes[i + name]!]}` : t.endsWith("string") ? "strings" : t;
    const e = by.get(kind) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += bytes;
    by.set(kind, e);
  }
  const shares = [...by]
    .sort((a, b) => b[1].bytes - a[1].bytes)
    .slice(0, top)
    .map(([kind, e]) => ({ kind, count: e.count, mb: e.bytes / 2 ** 20 }));
  return { totalMb: total / 2 ** 20, shares };
}
