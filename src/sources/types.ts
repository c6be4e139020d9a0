/**
 * What a source yields: one record per row of the input, in file order. Every
 * row ends up as exactly one of these, so `items + duplicates + quarantined`
 * always equals the rows read.
 */
export type SourceRecord =
  | {
      kind: "item";
      /** 1-based line where the row starts (a CSV header is line 1). */
      line: number;
      itemId: string;
      item: Record<string, unknown>;
      /** UTF-8 bytes of `JSON.stringify(item)`. */
      bytes: number;
      /** `hashValue(item)`: equal content, equal hash. */
      contentHash: string;
      /**
       * The row's text, given when the reader does not find duplicates
       * (`findDuplicates: false`): for the caller to quarantine it with, should
       * its id turn out to be an earlier row's with other content.
       */
      raw?: () => string;
    }
  /** Same id and identical content as an earlier row: deduplicated, not an error. */
  | { kind: "duplicate"; line: number; itemId: string; firstLine: number }
  /** Bad input, quarantined: never sent to a model. `raw` is at most ~500 characters of the row. */
  | { kind: "bad"; line: number; itemId?: string; reason: string; raw?: string };

export type SourceRecordKind = SourceRecord["kind"];

/** Running counts of what a source has yielded so far. */
export interface SourceStats {
  /** Data rows read (CSV header and blank lines are not rows). */
  rowsRead: number;
  items: number;
  duplicates: number;
  quarantined: number;
}

export interface ReadSourceOptions {
  /** Stops reading: the generator throws the signal's reason at the next row. */
  signal?: AbortSignal;
  /** Filled in as records are yielded, for callers that only consume the generator. */
  stats?: SourceStats;
  /**
   * Whether the reader finds rows whose id an earlier row has (default true).
   * To do so it remembers every id it has read: about 75 MB at a million rows.
   * With false, no id is remembered, every row that passes its checks is an
   * `item` (with its `raw` text), and finding duplicates is the caller's: a
   * run's load finds them in the store, so its memory does not grow with the input.
   */
  findDuplicates?: boolean;
}

/** Default `SourceSpec.maxItemBytes`: 256 KiB. */
export const DEFAULT_MAX_ITEM_BYTES = 262_144;

/** How much of an offending row a quarantine record keeps for a person to look at. */
export const RAW_PREVIEW_CHARS = 500;

/**
 * Zeroed counts, to pass as `readSource(..., { stats })`.
 *
 * @example
 * const stats = emptyStats();
 */
export function emptyStats(): SourceStats {
  return { rowsRead: 0, items: 0, duplicates: 0, quarantined: 0 };
}
