// A job's S3 source read as a stream of numbered items (JSONL items or one URL per line), never whole.
import { parseSourceLine, type SourceLine, toJobForm } from './job.ts';
import { readLines, storeLayout } from './store.ts';
import type { StoreConfig } from './types.ts';

export interface SourceObject {
  bucket: string;
  key: string;
}

/** One non-blank line of a source: its ordinal (the Distributed Map's item index), its text, its item. */
export type SourceEntry = SourceLine & { index: number; line: string };

/**
 * The source's items in order, one line in memory at a time. A bad line (not JSON, not a URL, an
 * invalid item) is yielded as a failed entry with INVALID_URL: it fails that item only, never the job.
 * Blank lines are skipped and do not count, as the single-run intake skips them.
 */
export async function* sourceEntries(
  store: StoreConfig,
  source: SourceObject,
  signal?: AbortSignal,
): AsyncGenerator<SourceEntry> {
  // readLines needs a layout only for its client; the job id is irrelevant to reading another object.
  const layout = storeLayout(store, 'source');
  let index = 0;
  for await (const line of readLines(layout, source.key, signal, source.bucket)) {
    yield { ...parseSourceLine(line), index: index++, line };
  }
}

/**
 * The entry as one line of the Distributed Map's JSONL source. A JSONL ItemReader fails the whole map
 * run on a line that is not JSON, so plain URL lines (and any bad line) are carried as JSON strings of
 * their original text; good items in canonical job form with their id. `toSourceLine` of the value the
 * map hands a batch gives back a line that `parseSourceLine` reads to the same id, item or error.
 */
export function toMapLine(entry: SourceLine & { line: string }): string {
  return entry.ok ? JSON.stringify(toJobForm(entry.item)) : JSON.stringify(entry.line.trim());
}

/** A Distributed Map item value back into a source line: a string is the original line, an object an item. */
export function toSourceLine(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}
