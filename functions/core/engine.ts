// PLACEHOLDER owned by the engine work: replaced by the real fan-out engine.
import type { JobOptions } from './job.ts';
import type { HostStats, Item, Outcome, Progress, Runtime } from './types.ts';

/** A running fan-out: outcomes in completion order, plus live figures for the manifest and progress. */
export interface FanOutRun {
  outcomes: AsyncIterableIterator<Outcome>;
  progress(): Progress;
  /** Per-origin figures for the manifest (the 100 busiest origins). */
  hostStats(): Record<string, HostStats>;
}

/** The engine over items already normalized by job.ts (runJob's entry). */
export function startFanOut(
  _items: Iterable<Item> | AsyncIterable<Item>,
  _options: JobOptions,
  _runtime: Runtime = {},
): FanOutRun {
  throw new Error('engine not yet implemented');
}

/** The library entry: validates `items` and `options` like a job, then yields outcomes as they finish. */
export function fanOut(
  _items: readonly unknown[],
  _options: unknown = {},
  _runtime: Runtime = {},
): AsyncIterableIterator<Outcome> {
  throw new Error('engine not yet implemented');
}
