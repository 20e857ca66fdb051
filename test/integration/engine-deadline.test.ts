// The job deadline and signal: unfinished items come back pending, never dropped, and nothing outlives the run.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fanOut, startFanOut } from '../../functions/core/engine.ts';
import { parseItems, parseOptions } from '../../functions/core/job.ts';
import type { Outcome } from '../../functions/core/types.ts';
import { recordingClock } from '../support/clock.ts';
import { addedResources, settledResources } from '../support/resources.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let upstream: Upstream;

beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream.close();
});
// The baseline is taken inside each test: a hook's own timeout timer would be in it otherwise.
beforeEach(() => upstream.reset());

async function collect(outcomes: AsyncIterable<Outcome>): Promise<Outcome[]> {
  const all: Outcome[] = [];
  for await (const outcome of outcomes) all.push(outcome);
  return all;
}

const urls = (count: number, query: string) =>
  Array.from({ length: count }, (_, i) => `${upstream.url}slow-${i}?${query}`);

describe('deadline', () => {
  it('returns every unfinished item as pending with its item, and leaves no handle open', async () => {
    const baseline = await settledResources();
    const clock = recordingClock(Date.now());
    const list = urls(10, 'hang=1');
    const outcomes = await collect(
      fanOut(list, { concurrency: 3 }, { allow: ['127.0.0.1'], clock, deadline: clock.now() + 150 }),
    );
    expect(outcomes).toHaveLength(10);
    for (const outcome of outcomes) {
      expect(outcome).toMatchObject({ ok: false, pending: true });
      expect(outcome.ok === false && outcome.pending && outcome.item.url).toBe(outcome.url);
    }
    expect(upstream.aborted).toBe(3);
    expect(addedResources(baseline, await settledResources())).toEqual([]);
  });

  it('starts nothing when the deadline has already passed', async () => {
    const clock = recordingClock(5_000_000);
    const outcomes = await collect(
      fanOut(urls(4, ''), {}, { allow: ['127.0.0.1'], clock, deadline: 4_000_000 }),
    );
    expect(outcomes.map((outcome) => !outcome.ok && outcome.pending)).toEqual([true, true, true, true]);
    expect(upstream.hits()).toBe(0);
  });

  it('keeps finished items finished and returns only the rest as pending', async () => {
    const list = [`${upstream.url}quick`, ...urls(2, 'hang=1')];
    const clock = recordingClock(Date.now());
    const outcomes = await collect(
      fanOut(list, { concurrency: 3 }, { allow: ['127.0.0.1'], clock, deadline: clock.now() + 200 }),
    );
    expect(outcomes.filter((outcome) => outcome.ok).map((outcome) => outcome.url)).toEqual([list[0]]);
    expect(outcomes.filter((outcome) => !outcome.ok && outcome.pending)).toHaveLength(2);
  });
});

describe('an attempt still connecting', () => {
  /**
   * A resolver for `held.test` that answers 127.0.0.1 only when released: the attempt stays before
   * undici's onRequestStart (no controller yet). The safety release only ends a failing run.
   */
  function heldLookup() {
    let release = (): void => undefined;
    let released = false;
    const answered = new Promise<void>((resolve) => {
      release = () => {
        released = true;
        resolve();
      };
    });
    const safety = setTimeout(release, 2_000);
    return {
      lookup: async () => {
        await answered;
        return [{ address: '127.0.0.1', family: 4 as const }];
      },
      get released() {
        return released;
      },
      done() {
        clearTimeout(safety);
        release();
      },
    };
  }

  it.each([
    ['the job signal', 'PENDING'],
    ['fail-fast', 'ABORTED'],
    ['the total timeout', 'TIMEOUT_TOTAL'],
  ])('settles at once on %s, without waiting for the connection', async (trigger, expected) => {
    const held = heldLookup();
    const controller = new AbortController();
    const items = [`http://held.test:${upstream.port}/held`];
    if (trigger === 'fail-fast') items.push(`${upstream.url}bad?status=404&latency=50`);
    const options =
      trigger === 'the total timeout'
        ? { retries: { maxAttempts: 1 }, timeouts: { totalMs: 100, connectMs: 60_000 } }
        : { mode: trigger === 'fail-fast' ? 'fail-fast' : 'settle', timeouts: { connectMs: 60_000 } };
    if (trigger === 'the job signal') setTimeout(() => controller.abort(), 50);
    const outcomes: Outcome[] = [];
    let releasedBeforeOutcome = true;
    for await (const outcome of fanOut(items, options, {
      allow: ['held.test', '127.0.0.1'],
      lookup: held.lookup,
      signal: controller.signal,
    })) {
      if (outcome.url.includes('held.test')) releasedBeforeOutcome = held.released;
      outcomes.push(outcome);
    }
    held.done();
    const heldOutcome = outcomes.find((outcome) => outcome.url.includes('held.test'));
    const code = heldOutcome?.ok ? 'OK' : heldOutcome?.pending ? 'PENDING' : heldOutcome?.error.code;
    expect(code).toBe(expected);
    expect(releasedBeforeOutcome).toBe(false);
    expect(upstream.hits('/held')).toBe(0);
  });
});

describe('a far deadline', () => {
  it('does not fire at once when it is more than 24.8 days away (setTimeout overflow)', async () => {
    const outcomes = await collect(
      fanOut(urls(2, ''), {}, { allow: ['127.0.0.1'], deadline: Date.now() + 25 * 86_400_000 }),
    );
    expect(outcomes.map((outcome) => outcome.ok)).toEqual([true, true]);
  });
});

describe('signal', () => {
  it('an aborted signal makes the rest pending and closes everything', async () => {
    const baseline = await settledResources();
    const controller = new AbortController();
    const run = startFanOut(parseItems(urls(8, 'hang=1')).items, parseOptions({ concurrency: 2 }), {
      allow: ['127.0.0.1'],
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 100);
    const outcomes = await collect(run.outcomes);
    expect(outcomes).toHaveLength(8);
    expect(outcomes.every((outcome) => !outcome.ok && outcome.pending)).toBe(true);
    expect(run.progress()).toMatchObject({ pending: 8, inFlight: 0 });
    expect(addedResources(baseline, await settledResources())).toEqual([]);
  });

  it('a consumer that stops early aborts the run and leaves no handle open', async () => {
    const baseline = await settledResources();
    for await (const outcome of fanOut(
      [`${upstream.url}first`, ...urls(4, 'hang=1')],
      { concurrency: 5 },
      {
        allow: ['127.0.0.1'],
      },
    )) {
      expect(outcome.ok).toBe(true);
      break;
    }
    expect(addedResources(baseline, await settledResources())).toEqual([]);
  });

  it('a consumer that breaks on the first pending outcome after an abort settles (Ctrl-C) and leaves no handle open', async () => {
    const baseline = await settledResources();
    const controller = new AbortController();
    // More unstarted items than the outcome queue holds (concurrency 2): the drain must not wait for a reader.
    const list = urls(20, 'hang=1');
    const abortOnceBusy = (async () => {
      while (upstream.inFlight.current < 2) await new Promise<void>((resolve) => setTimeout(resolve, 5));
      controller.abort();
    })();
    let seen = 0;
    let sawPending = false;
    for await (const outcome of fanOut(
      list,
      { concurrency: 2 },
      { allow: ['127.0.0.1'], signal: controller.signal },
    )) {
      seen++;
      if (!outcome.ok && outcome.pending) {
        sawPending = true;
        break;
      }
    }
    await abortOnceBusy;
    expect(sawPending).toBe(true);
    expect(seen).toBe(1);
    expect(addedResources(baseline, await settledResources())).toEqual([]);
  });

  it('a consumer that stops mid-drain after an abort lets the run end (return() settles)', async () => {
    const controller = new AbortController();
    controller.abort();
    const outcomes = fanOut(
      urls(50, ''),
      { concurrency: 3 },
      { allow: ['127.0.0.1'], signal: controller.signal },
    );
    const first = await outcomes.next();
    expect(first.done === false && !first.value.ok && first.value.pending).toBe(true);
    await expect(outcomes.return?.()).resolves.toEqual({ value: undefined, done: true });
    expect(await outcomes.next()).toEqual({ value: undefined, done: true });
    expect(upstream.hits()).toBe(0);
  });

  it('a complete run leaves no handle open', async () => {
    const baseline = await settledResources();
    await collect(fanOut(urls(6, ''), { concurrency: 3 }, { allow: ['127.0.0.1'] }));
    expect(addedResources(baseline, await settledResources())).toEqual([]);
  });
});
