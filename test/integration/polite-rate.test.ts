// perHostRate: sends spaced by the rate on the injected clock, and the cap measured at the server.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFanOut } from '../../functions/core/engine.ts';
import { createHostScheduler, type HostPermit } from '../../functions/core/hosts.ts';
import { parseItems, parseOptions } from '../../functions/core/job.ts';
import { manualClock } from '../support/clock.ts';
import { addedResources, settledResources } from '../support/resources.ts';
import { startThrottlingUpstream, type ThrottlingUpstream } from '../support/throttling-upstream.ts';

const answered = { ok: true, status: 200, throttled: false, latencyMs: 1 };

describe('rate cap on the injected clock', () => {
  it('spaces sends by 1000/perHostRate ms, counted from each send', async () => {
    const clock = manualClock(0);
    const hosts = createHostScheduler({ perHost: 8, perHostRate: 10, adaptive: false }, clock);
    const sentAt: number[] = [];
    const take = async (): Promise<void> => {
      const permit = await hosts.acquire('http://a.test');
      permit.sending();
      sentAt.push(clock.now());
    };
    const all = Promise.all(Array.from({ length: 5 }, take));
    for (let step = 0; step < 4; step++) {
      await clock.settle();
      clock.advance(100);
    }
    await all;
    expect(sentAt).toEqual([0, 100, 200, 300, 400]);
    hosts.close();
  });

  it('keeps each origin on its own rate and divides it by the share', async () => {
    const clock = manualClock(0);
    const hosts = createHostScheduler({ perHost: 8, perHostRate: 10, adaptive: false, share: 2 }, clock);
    const sent: string[] = [];
    const take = async (origin: string): Promise<HostPermit> => {
      const permit = await hosts.acquire(origin);
      permit.sending();
      sent.push(`${origin}@${clock.now()}`);
      return permit;
    };
    const all = Promise.all([take('http://a.test'), take('http://a.test'), take('http://b.test')]);
    await clock.settle();
    clock.advance(199);
    await clock.settle();
    expect(sent).toEqual(['http://a.test@0', 'http://b.test@0']);
    clock.advance(1);
    await all;
    // 10/s shared by 2 runs: 5/s each, one send per 200 ms.
    expect(sent).toEqual(['http://a.test@0', 'http://b.test@0', 'http://a.test@200']);
    hosts.close();
  });

  it('divides perHost by the share, never below 1', () => {
    const clock = manualClock(0);
    const hosts = createHostScheduler({ perHost: 8, perHostRate: null, adaptive: false, share: 3 }, clock);
    const permits = [hosts.tryAcquire('http://a.test'), hosts.tryAcquire('http://a.test')];
    expect(permits.every((permit) => permit !== null)).toBe(true);
    expect(hosts.tryAcquire('http://a.test')).toBeNull();
    const lonely = createHostScheduler({ perHost: 2, perHostRate: null, adaptive: false, share: 5 }, clock);
    expect(lonely.tryAcquire('http://a.test')).not.toBeNull();
    expect(lonely.tryAcquire('http://a.test')).toBeNull();
    for (const permit of permits) permit?.release(answered);
  });
});

describe('rate cap measured at the server', () => {
  let upstream: ThrottlingUpstream;
  beforeAll(async () => {
    upstream = await startThrottlingUpstream({ origins: 2 });
  });
  afterAll(async () => {
    await upstream.close();
  });
  beforeEach(() => upstream.reset());

  it('lets no origin see more than perHostRate requests per second (R*T + 1 in any window T)', async () => {
    const rate = 20;
    const perOrigin = 25;
    const urls = upstream.originList.flatMap((origin) =>
      Array.from({ length: perOrigin }, (_, index) => `${origin}/item/${index}`),
    );
    const run = startFanOut(
      parseItems(urls).items,
      parseOptions({ concurrency: 16, perHost: 8, perHostRate: rate }),
      { allow: ['127.0.0.1'] },
    );
    let succeeded = 0;
    for await (const outcome of run.outcomes) if (outcome.ok) succeeded++;
    expect(succeeded).toBe(urls.length);
    for (const origin of upstream.originList) {
      const arrivals = upstream.counters(origin).arrivals.map((arrival) => arrival.at);
      expect(arrivals).toHaveLength(perOrigin);
      // Any window of one second holds at most R + 1 arrivals (the token bucket's bound, burst 1).
      for (let first = 0; first < arrivals.length; first++) {
        const start = arrivals[first] ?? 0;
        const inWindow = arrivals.filter((at) => at >= start && at < start + 1000).length;
        expect(inWindow).toBeLessThanOrEqual(rate + 1);
      }
      // And over the run, the rate itself (5% for loopback jitter and the clock's whole ms), from the
      // second arrival: the first may come late by a cold connect, which would shorten the span.
      const span = (arrivals.at(-1) ?? 0) - (arrivals[1] ?? 0);
      expect(((arrivals.length - 2) * 1000) / span).toBeLessThanOrEqual(rate * 1.05);
    }
  });

  it('leaves no timer behind when a rate-capped run stops while an origin waits for its next slot', async () => {
    const before = process.getActiveResourcesInfo().sort();
    const urls = Array.from({ length: 4 }, (_, index) => `${upstream.originList[0]}/item/${index}`);
    // One request per 10 s: the scheduler holds a 10 s timer for the second when the consumer leaves.
    const run = startFanOut(parseItems(urls).items, parseOptions({ perHostRate: 0.1 }), {
      allow: ['127.0.0.1'],
    });
    for await (const outcome of run.outcomes) {
      expect(outcome.ok).toBe(true);
      break;
    }
    expect(addedResources(before, await settledResources())).toEqual([]);
  });
});
