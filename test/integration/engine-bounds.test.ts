// The engine's bounds: global and per-origin concurrency never exceeded and reached, intake pulled lazily.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fanOut, startFanOut } from '../../functions/core/engine.ts';
import { parseOptions } from '../../functions/core/job.ts';
import type { Item, Outcome } from '../../functions/core/types.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

const runtime = { allow: ['127.0.0.1'] };
let upstream: Upstream;

beforeAll(async () => {
  upstream = await startUpstream({ origins: 3 });
});
afterAll(async () => {
  await upstream.close();
});
beforeEach(() => upstream.reset());

async function collect(outcomes: AsyncIterable<Outcome>): Promise<Outcome[]> {
  const all: Outcome[] = [];
  for await (const outcome of outcomes) all.push(outcome);
  return all;
}

describe('global bound', () => {
  it.each([1, 4, 16])('keeps at most %i requests in flight and reaches that many', async (concurrency) => {
    const urls = Array.from({ length: concurrency * 4 }, (_, i) => `${upstream.url}item/${i}?latency=60`);
    const outcomes = await collect(fanOut(urls, { concurrency, perHost: concurrency }, runtime));
    expect(outcomes.filter((outcome) => outcome.ok)).toHaveLength(urls.length);
    expect(upstream.inFlight.max).toBe(concurrency);
  });
});

describe('per-origin bound', () => {
  it('keeps at most perHost requests per origin while the global bound spans origins', async () => {
    const urls = upstream.originList.flatMap((origin) =>
      Array.from({ length: 12 }, (_, i) => `${origin}/item/${i}?latency=60`),
    );
    const outcomes = await collect(fanOut(urls, { concurrency: 9, perHost: 3 }, runtime));
    expect(outcomes.filter((outcome) => outcome.ok)).toHaveLength(36);
    expect(upstream.inFlight.maxPerOrigin).toBe(3);
    expect(upstream.inFlight.max).toBeLessThanOrEqual(9);
    expect(upstream.inFlight.max).toBeGreaterThan(3);
  });

  it('reports per-origin figures for the manifest', async () => {
    const run = startFanOut(
      [0, 1, 2].map((i) => toItem(`${upstream.originList[0]}/item/${i}`)),
      parseOptions({ concurrency: 2 }),
      runtime,
    );
    await collect(run.outcomes);
    const stats = run.hostStats()[upstream.originList[0] ?? ''];
    expect(stats).toMatchObject({ requests: 3, succeeded: 3, failed: 0, throttled: 0, finalLimit: 2 });
    expect(stats?.p95Ms).toBeGreaterThanOrEqual(stats?.p50Ms ?? 0);
  });

  it('puts the slow tail in p95, not p50: 2 of 20 answers wait 300 ms at the server', async () => {
    const origin = upstream.originList[1] ?? '';
    const items = Array.from({ length: 20 }, (_, i) =>
      toItem(`${origin}/item/${i}${i >= 18 ? '?latency=300' : ''}`),
    );
    const run = startFanOut(items, parseOptions({ concurrency: 20, perHost: 20 }), runtime);
    await collect(run.outcomes);
    const stats = run.hostStats()[origin];
    // A lower bound only: the server held those two answers 300 ms, however fast the rest came back.
    expect(stats?.p95Ms).toBeGreaterThanOrEqual(300);
    expect(stats?.p50Ms).toBeLessThanOrEqual(stats?.p95Ms ?? 0);
  });
});

describe('intake', () => {
  it('pulls items lazily: never more than concurrency ahead of the outcomes consumed', async () => {
    let pulled = 0;
    async function* source(): AsyncGenerator<Item> {
      for (let i = 0; i < 200; i++) {
        pulled++;
        yield toItem(`${upstream.url}item/${i}`);
      }
    }
    const run = startFanOut(source(), parseOptions({ concurrency: 4 }), runtime);
    let consumed = 0;
    let maxAhead = 0;
    for await (const outcome of run.outcomes) {
      expect(outcome.ok).toBe(true);
      consumed++;
      maxAhead = Math.max(maxAhead, pulled - consumed);
    }
    expect(consumed).toBe(200);
    // admitted (4) + outcomes waiting for the consumer (4) + the one being pulled
    expect(maxAhead).toBeLessThanOrEqual(9);
  });

  it('yields outcomes in completion order, not input order', async () => {
    const urls = [`${upstream.url}slow?latency=300`, `${upstream.url}fast`];
    const outcomes = await collect(fanOut(urls, { concurrency: 2 }, runtime));
    expect(outcomes.map((outcome) => outcome.url)).toEqual([urls[1], urls[0]]);
  });

  it('counts progress and reports it to the listener at the end', async () => {
    const seen: number[] = [];
    const run = startFanOut(
      [0, 1, 2, 3, 4].map((i) => toItem(`${upstream.url}item/${i}`)),
      parseOptions({ concurrency: 2 }),
      { ...runtime, onProgress: (progress) => seen.push(progress.succeeded) },
    );
    await collect(run.outcomes);
    expect(seen.at(-1)).toBe(5);
    expect(run.progress()).toMatchObject({
      total: 5,
      succeeded: 5,
      failed: 0,
      pending: 0,
      inFlight: 0,
      retries: 0,
    });
    expect(run.progress().loopDelayP99Ms).toBeGreaterThanOrEqual(0);
  });

  it('reports an event-loop stall in loopDelayP99Ms', async () => {
    let reports = 0;
    const run = startFanOut(
      [0, 1, 2, 3].map((i) => toItem(`${upstream.url}item/${i}?latency=50`)),
      parseOptions({ concurrency: 1 }),
      {
        ...runtime,
        onProgress: () => {
          // Not the first report (the run's start): the monitor has been sampling for a while by the second.
          if (++reports !== 2) return;
          // A listener that blocks the loop for 120 ms: the monitor must see it (a lower bound).
          const until = performance.now() + 120;
          while (performance.now() < until);
        },
      },
    );
    await collect(run.outcomes);
    expect(run.progress().loopDelayP99Ms).toBeGreaterThanOrEqual(80);
  });

  it('reports progress once when the run starts, before any item finishes', async () => {
    const controller = new AbortController();
    // Only a failing run needs this: the item hangs until the signal.
    const safety = setTimeout(() => controller.abort(), 5_000);
    const first: Array<{ finished: number; inFlight: number }> = [];
    const run = startFanOut([toItem(`${upstream.url}hangs?hang=1`)], parseOptions({}), {
      ...runtime,
      signal: controller.signal,
      onProgress: (progress) => {
        if (first.length === 0) {
          first.push({
            finished: progress.succeeded + progress.failed + progress.pending,
            inFlight: progress.inFlight,
          });
          controller.abort();
        }
      },
    });
    await collect(run.outcomes);
    clearTimeout(safety);
    expect(first).toEqual([{ finished: 0, inFlight: 0 }]);
  });
});

function toItem(url: string): Item {
  return { id: url.slice(-16).replace(/[^A-Za-z0-9]/g, 'x'), url, method: 'GET', headers: {} };
}

describe('outcome ms', () => {
  it('runs from the first send, not from intake: waiting for a busy origin is not counted', async () => {
    // A clock that ticks 1,000 ms per request the upstream receives: an item sent after the
    // previous one's answer sees exactly one tick, however long it waited for the origin's permit.
    const base = Date.now();
    const clock = {
      now: () => base + upstream.hits() * 1_000,
      sleep: (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
    };
    const urls = Array.from({ length: 4 }, (_, i) => `${upstream.url}item/${i}?latency=20`);
    const outcomes = await collect(
      fanOut(urls, { concurrency: 4, perHost: 1, adaptive: false }, { ...runtime, clock }),
    );
    expect(outcomes.every((outcome) => outcome.ok)).toBe(true);
    // From intake, the last item would show 4,000 ms: it waited for three others first.
    expect(outcomes.map((outcome) => outcome.ms)).toEqual([1_000, 1_000, 1_000, 1_000]);
  });

  it('is 0 for an item that never went out', async () => {
    const outcomes = await collect(
      fanOut([`http://10.0.0.1/x`], {}, { clock: { now: () => 5, sleep: async () => undefined } }),
    );
    expect(outcomes).toMatchObject([
      { ok: false, error: { code: 'BLOCKED_DESTINATION' }, attempts: 1, ms: 0 },
    ]);
  });
});
