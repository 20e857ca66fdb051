// Modes: settle gives every item an outcome; fail-fast and maxFailureRatio abort the rest, and the server sees it.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fanOut } from '../../functions/core/engine.ts';
import type { Outcome } from '../../functions/core/types.ts';
import { recordingClock } from '../support/clock.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let upstream: Upstream;

beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream.close();
});
beforeEach(() => upstream.reset());

async function run(items: unknown[], options: Record<string, unknown>): Promise<Outcome[]> {
  const all: Outcome[] = [];
  for await (const outcome of fanOut(items, options, { allow: ['127.0.0.1'], clock: recordingClock() })) {
    all.push(outcome);
  }
  return all;
}

const codes = (outcomes: Outcome[]) =>
  outcomes.map((outcome) => (outcome.ok ? 'OK' : outcome.pending ? 'PENDING' : outcome.error.code));

describe('settle', () => {
  it('gives every item exactly one outcome, failures as data', async () => {
    const urls = [
      `${upstream.url}item/1`,
      `${upstream.url}missing?status=404`,
      `${upstream.url}item/2`,
      `${upstream.url}broken?status=500`,
    ];
    const outcomes = await run(urls, { concurrency: 2, retries: { maxAttempts: 1 } });
    expect(new Set(outcomes.map((outcome) => outcome.url))).toEqual(new Set(urls));
    expect(codes(outcomes).sort()).toEqual(['HTTP_STATUS', 'HTTP_STATUS', 'OK', 'OK']);
  });
});

describe('fail-fast', () => {
  it('aborts in-flight requests (the server sees the abort) and marks the rest ABORTED', async () => {
    const urls = [
      `${upstream.url}fails?status=404&latency=100`,
      ...Array.from({ length: 3 }, (_, i) => `${upstream.url}hangs-${i}?hang=1`),
      ...Array.from({ length: 20 }, (_, i) => `${upstream.url}never-${i}`),
    ];
    const outcomes = await run(urls, { concurrency: 4, mode: 'fail-fast' });
    expect(outcomes).toHaveLength(urls.length);
    const first = outcomes.find((outcome) => outcome.url.includes('fails'));
    expect(first).toMatchObject({ ok: false, error: { code: 'HTTP_STATUS', status: 404 } });
    const rest = outcomes.filter((outcome) => outcome !== first);
    expect(new Set(codes(rest))).toEqual(new Set(['ABORTED']));
    // the three hanging requests were cut, and nothing after the failure was fetched
    expect(upstream.aborted).toBe(3);
    expect(upstream.hits()).toBe(4);
  });

  it('counts no attempt for an item stopped while it waited for its origin (it was never sent)', async () => {
    const controller = new AbortController();
    // Stop once the first item hangs at the server: the second is then parked on the origin's one permit.
    const poll = setInterval(() => {
      if (upstream.inFlight.current > 0) controller.abort();
    }, 5);
    const attemptsByPath: Record<string, number> = {};
    const items = [`${upstream.url}x?hang=1`, `${upstream.url}y`];
    const options = { concurrency: 2, perHost: 1, adaptive: false };
    for await (const outcome of fanOut(items, options, { allow: ['127.0.0.1'], signal: controller.signal })) {
      attemptsByPath[new URL(outcome.url).pathname] = outcome.attempts;
    }
    clearInterval(poll);
    expect(upstream.hits('/y')).toBe(0);
    expect(attemptsByPath).toEqual({ '/x': 1, '/y': 0 });
  });
});

describe('maxFailureRatio', () => {
  it('aborts once more than the ratio of at least 10 finished items failed', async () => {
    const urls = [
      ...Array.from({ length: 10 }, (_, i) => `${upstream.url}bad-${i}?status=404`),
      ...Array.from({ length: 30 }, (_, i) => `${upstream.url}later-${i}`),
    ];
    const outcomes = await run(urls, { concurrency: 1, maxFailureRatio: 0.5 });
    expect(outcomes).toHaveLength(40);
    const counts = codes(outcomes).reduce<Record<string, number>>((acc, code) => {
      acc[code] = (acc[code] ?? 0) + 1;
      return acc;
    }, {});
    expect(counts).toEqual({ HTTP_STATUS: 10, ABORTED: 30 });
  });

  it('does not judge before 10 items finished', async () => {
    const urls = [
      `${upstream.url}one-bad?status=404`,
      ...Array.from({ length: 5 }, (_, i) => `${upstream.url}ok-${i}`),
    ];
    const outcomes = await run(urls, { concurrency: 1, maxFailureRatio: 0.1 });
    expect(codes(outcomes).filter((code) => code === 'OK')).toHaveLength(5);
  });
});
