// A scripted stand-in for engine.ts startFanOut: outcomes decided per item, for store and resume tests.
import { setTimeout as delay } from 'node:timers/promises';
import type { startFanOut } from '../../functions/core/engine.ts';
import type { Item, Outcome } from '../../functions/core/types.ts';

export type Verdict = 'ok' | 'fail' | 'pending' | 'aborted';

export interface FakeEngine {
  startFanOut: typeof startFanOut;
  /** Items the engine was handed, over every run (what a "fetch" would have been). */
  fetched: string[];
}

/** Outcomes in item order; `decide` picks each item's fate, `delayMs` spaces them (real time, for kill tests). */
export function fakeEngine(
  decide: (item: Item, index: number) => Verdict = () => 'ok',
  options: { delayMs?: number; valueBytes?: number } = {},
): FakeEngine {
  const fetched: string[] = [];
  const pad = 'x'.repeat(options.valueBytes ?? 16);
  const start: typeof startFanOut = (items, _jobOptions, runtime = {}) => {
    async function* outcomes(): AsyncGenerator<Outcome> {
      let index = 0;
      for await (const item of items as AsyncIterable<Item>) {
        if (options.delayMs) await delay(options.delayMs);
        const verdict = runtime.signal?.aborted ? 'pending' : decide(item, index++);
        if (verdict !== 'pending') fetched.push(item.id);
        const base = { id: item.id, url: item.url, attempts: 1, ms: 3 };
        if (verdict === 'ok') yield { ...base, ok: true, status: 200, value: { id: item.id, pad } };
        else if (verdict === 'fail')
          yield { ...base, ok: false, error: { code: 'HTTP_STATUS', message: 'status 500', status: 500 } };
        else if (verdict === 'aborted')
          yield { ...base, ok: false, error: { code: 'ABORTED', message: 'aborted by fail-fast' } };
        else yield { ...base, attempts: 0, ok: false, pending: true, item };
      }
    }
    const iterator = outcomes();
    return {
      outcomes: iterator,
      progress: () => ({
        total: null,
        succeeded: 0,
        failed: 0,
        pending: 0,
        inFlight: 0,
        retries: 0,
        throttled: 0,
        failuresByCode: {},
        loopDelayP99Ms: 0,
        elapsedMs: 0,
      }),
      hostStats: () => ({}),
    };
  };
  return { startFanOut: start, fetched };
}

/** `count` items (bare URLs on a host that is never contacted: the fake engine does not fetch). */
export function urls(count: number, from = 0): string[] {
  return Array.from({ length: count }, (_, index) => `http://upstream.test/item/${from + index}`);
}
