// Retry-After as a host-wide cooldown: the whole origin pauses, other origins go on, and a pause past the deadline leaves items pending.
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { startFanOut } from '../../functions/core/engine.ts';
import { parseItems, parseOptions } from '../../functions/core/job.ts';
import type { Outcome } from '../../functions/core/types.ts';
import { manualClock } from '../support/clock.ts';
import { startThrottlingUpstream, type ThrottlingUpstream } from '../support/throttling-upstream.ts';

const T0 = 1_000_000;
let clock = manualClock(T0);
let upstream: ThrottlingUpstream;
let paused: string;
let other: string;

beforeAll(async () => {
  // Arrivals stamped on the test's clock: "when" means the engine's time, which only the test moves.
  upstream = await startThrottlingUpstream({ origins: 2, latencyMs: 20, now: () => clock.now() });
  [paused, other] = upstream.originList as [string, string];
});
afterAll(async () => {
  await upstream.close();
});
beforeEach(() => {
  clock = manualClock(T0);
  upstream.reset();
});

const interleaved = (count: number): string[] =>
  Array.from({ length: count }, (_, index) => [`${paused}/item/${index}`, `${other}/item/${index}`]).flat();

function consume(outcomes: AsyncIterable<Outcome>): { all: Outcome[]; done: Promise<void> } {
  const all: Outcome[] = [];
  const done = (async () => {
    for await (const outcome of outcomes) all.push(outcome);
  })();
  return { all, done };
}

const byOrigin = (all: Outcome[], origin: string): Outcome[] =>
  all.filter((outcome) => outcome.url.startsWith(origin));

describe('Retry-After cooldown', () => {
  it('pauses every request to the origin until Retry-After, while other origins finish', async () => {
    upstream.throttleNext(paused, 1, '2');
    const run = startFanOut(
      parseItems(interleaved(30)).items,
      parseOptions({ concurrency: 8, perHost: 4, adaptive: false }),
      { allow: ['127.0.0.1'], clock },
    );
    const { all, done } = consume(run.outcomes);
    // The other origin needs no clock: all of it completes while the paused one waits on the clock (its
    // waiting items step aside, or they would fill the 8 intake slots and stall the other origin too).
    await vi.waitFor(() => expect(byOrigin(all, other)).toHaveLength(30), { timeout: 5_000 });
    await vi.waitFor(() => expect(byOrigin(all, paused)).toHaveLength(3), { timeout: 5_000 });
    await clock.settle();
    // The refusal plus the 3 sent with it; nothing after the 429, although 3 permits came free.
    expect(upstream.counters(paused).requests).toBe(4);
    clock.advance(1_999);
    await clock.settle();
    expect(upstream.counters(paused).requests).toBe(4);
    clock.advance(1);
    await done;
    expect(all.filter((outcome) => outcome.ok)).toHaveLength(60);
    const arrivals = upstream.counters(paused).arrivals;
    expect(arrivals).toHaveLength(31);
    expect(arrivals.slice(0, 4).every((arrival) => arrival.at === T0)).toBe(true);
    expect(arrivals.slice(4).every((arrival) => arrival.at >= T0 + 2_000)).toBe(true);
    expect(run.progress().throttled).toBe(1);
  });

  it('leaves the origin’s items pending at once when its Retry-After reaches past the deadline', async () => {
    upstream.throttleNext(paused, 1, '30');
    const run = startFanOut(
      parseItems(interleaved(10)).items,
      parseOptions({ concurrency: 8, perHost: 2, adaptive: false }),
      { allow: ['127.0.0.1'], clock, deadline: T0 + 5_000 },
    );
    const { all, done } = consume(run.outcomes);
    // Nobody advances the clock: a run that slept on the cooldown would never finish.
    await vi.waitFor(() => expect(all).toHaveLength(20), { timeout: 5_000 });
    await done;
    expect(byOrigin(all, other).every((outcome) => outcome.ok)).toBe(true);
    const mine = byOrigin(all, paused);
    // Two were sent together: one refused (pending: its Retry-After does not fit), one served.
    expect(mine.filter((outcome) => outcome.ok)).toHaveLength(1);
    expect(mine.filter((outcome) => !outcome.ok && outcome.pending === true)).toHaveLength(9);
    expect(upstream.counters(paused).requests).toBe(2);
    expect(clock.now()).toBe(T0);
  });

  it('turns away items already waiting on the origin when the long Retry-After arrives', async () => {
    upstream.configure(paused, { latencyMs: 40 });
    upstream.throttleNext(paused, 1, '30');
    try {
      const run = startFanOut(
        parseItems(Array.from({ length: 6 }, (_, index) => `${paused}/item/${index}`)).items,
        parseOptions({ concurrency: 6, perHost: 1, adaptive: false }),
        { allow: ['127.0.0.1'], clock, deadline: T0 + 5_000 },
      );
      const { all, done } = consume(run.outcomes);
      await vi.waitFor(() => expect(all).toHaveLength(6), { timeout: 5_000 });
      await done;
      // perHost 1: the first request was refused while the 5 others queued for its permit.
      expect(all.every((outcome) => !outcome.ok && outcome.pending === true)).toBe(true);
      expect(upstream.counters(paused).requests).toBe(1);
    } finally {
      upstream.configure(paused, { latencyMs: 20 });
    }
  });
});
