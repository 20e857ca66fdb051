// The host scheduler's windows, driven directly: deterministic counts of permits, no sockets, no time.
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../functions/core/clock.ts';
import { createHostScheduler, type HostPermit } from '../../functions/core/hosts.ts';

function drain(adaptive: boolean, perHost: number): HostPermit[] {
  const scheduler = createHostScheduler({ perHost, perHostRate: null, adaptive }, systemClock);
  const permits = drainFrom(scheduler);
  scheduler.close();
  return permits;
}

const ok = { ok: true, status: 200, throttled: false, latencyMs: 5 };

/** Every permit the scheduler grants for the origin right now. */
function drainFrom(scheduler: ReturnType<typeof createHostScheduler>): HostPermit[] {
  const permits: HostPermit[] = [];
  for (let permit = scheduler.tryAcquire('https://a.test'); permit !== null; ) {
    permits.push(permit);
    permit = scheduler.tryAcquire('https://a.test');
  }
  return permits;
}

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

  it('goes to perHost on its first answer when that is a success and nothing was refused', () => {
    const scheduler = createHostScheduler({ perHost: 50, perHostRate: null, adaptive: true }, systemClock);
    const first = drainFrom(scheduler);
    expect(first).toHaveLength(32);
    first[0]?.release(ok);
    // 31 still in flight under a limit of 50.
    expect(drainFrom(scheduler)).toHaveLength(19);
    expect(scheduler.stats()['https://a.test']?.finalLimit).toBe(50);
    scheduler.close();
  });

  it('grows by one per answer from the cut when a refusal came before the first success', () => {
    const scheduler = createHostScheduler({ perHost: 50, perHostRate: null, adaptive: true }, systemClock);
    const first = drainFrom(scheduler);
    // The 32nd was refused at once (knee 31, limit cut to 16), then the first success arrived.
    first[31]?.release({ ok: false, status: 429, throttled: true, latencyMs: 1 });
    first[0]?.release(ok);
    expect(scheduler.stats()['https://a.test']?.finalLimit).toBe(17);
    expect(drainFrom(scheduler)).toHaveLength(0);
    scheduler.close();
  });

  it('reaches perHost once the whole first window has answered', () => {
    const scheduler = createHostScheduler({ perHost: 50, perHostRate: null, adaptive: true }, systemClock);
    const first = drainFrom(scheduler);
    for (const permit of first) permit.release(ok);
    let second = 0;
    while (scheduler.tryAcquire('https://a.test') !== null) second++;
    expect(second).toBe(50);
    scheduler.close();
  });

  it('cuts to the knee it learnt, not above it, on the first refusals', () => {
    const scheduler = createHostScheduler({ perHost: 50, perHostRate: null, adaptive: true }, systemClock);
    const first = drainFrom(scheduler);
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
