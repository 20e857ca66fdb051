// The host scheduler's windows, driven directly: deterministic counts of permits, no sockets, no time.
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../functions/core/clock.ts';
import { createHostScheduler, type HostPermit } from '../../functions/core/hosts.ts';

function drain(adaptive: boolean, perHost: number): HostPermit[] {
  const scheduler = createHostScheduler({ perHost, perHostRate: null, adaptive }, systemClock);
  const permits: HostPermit[] = [];
  for (let permit = scheduler.tryAcquire('https://a.test'); permit !== null; ) {
    permits.push(permit);
    permit = scheduler.tryAcquire('https://a.test');
  }
  scheduler.close();
  return permits;
}

const ok = { ok: true, status: 200, throttled: false, latencyMs: 5 };

describe('a fresh origin’s first window', () => {
  it.each([
    [true, 50, 32],
    [true, 20, 20],
    [false, 50, 50],
    [false, 8, 8],
  ])(
    'with adaptive %s and perHost %i, grants %i permits before the first answer',
    (adaptive, perHost, first) => {
      expect(drain(adaptive, perHost)).toHaveLength(first);
    },
  );

  it('grows by one per answer (doubling each round trip) up to perHost', () => {
    const scheduler = createHostScheduler({ perHost: 50, perHostRate: null, adaptive: true }, systemClock);
    const first: HostPermit[] = [];
    for (
      let p = scheduler.tryAcquire('https://a.test');
      p !== null;
      p = scheduler.tryAcquire('https://a.test')
    )
      first.push(p);
    for (const permit of first) permit.release(ok);
    let second = 0;
    while (scheduler.tryAcquire('https://a.test') !== null) second++;
    expect(second).toBe(50);
    scheduler.close();
  });

  it('cuts to the knee it learnt, not above it, on the first refusals', () => {
    const scheduler = createHostScheduler({ perHost: 50, perHostRate: null, adaptive: true }, systemClock);
    const first: HostPermit[] = [];
    for (
      let p = scheduler.tryAcquire('https://a.test');
      p !== null;
      p = scheduler.tryAcquire('https://a.test')
    )
      first.push(p);
    // The origin took 10 and refused the 11th onwards.
    first.forEach((permit, index) => {
      permit.release(index < 10 ? ok : { ok: false, status: 429, throttled: true, latencyMs: 5 });
    });
    let next = 0;
    while (scheduler.tryAcquire('https://a.test') !== null) next++;
    expect(next).toBeLessThanOrEqual(10);
    expect(scheduler.stats()['https://a.test']?.finalLimit).toBeLessThanOrEqual(10);
    scheduler.close();
  });
});
