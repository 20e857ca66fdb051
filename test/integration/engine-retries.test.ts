// Retries: counted per item, stopped on non-retryable answers, Retry-After honoured, unsafe methods left alone.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fanOut } from '../../functions/core/engine.ts';
import type { Outcome, Runtime } from '../../functions/core/types.ts';
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

async function run(items: unknown[], options: Record<string, unknown>, runtime: Runtime): Promise<Outcome[]> {
  const all: Outcome[] = [];
  for await (const outcome of fanOut(items, options, { allow: ['127.0.0.1'], ...runtime })) all.push(outcome);
  return all;
}

describe('retries', () => {
  it('retries a 503 three times, then records HTTP_STATUS', async () => {
    const clock = recordingClock();
    const [outcome] = await run([`${upstream.url}down?status=503`], {}, { clock });
    expect(outcome).toMatchObject({ ok: false, attempts: 3, error: { code: 'HTTP_STATUS', status: 503 } });
    expect(upstream.hits('/down')).toBe(3);
    expect(clock.sleeps).toHaveLength(2);
    // full jitter under the exponential ceiling: [0, 200) then [0, 400)
    expect(clock.sleeps[0]).toBeLessThan(200);
    expect(clock.sleeps[1]).toBeLessThan(400);
  });

  it('succeeds after failing twice, counting three attempts', async () => {
    const [outcome] = await run([`${upstream.url}flaky?failFirst=2`], {}, { clock: recordingClock() });
    expect(outcome).toMatchObject({ ok: true, status: 200, attempts: 3 });
  });

  it('retries a reset connection', async () => {
    const [outcome] = await run(
      [`${upstream.url}resets?failFirst=1&failStatus=reset`],
      {},
      { clock: recordingClock() },
    );
    expect(outcome).toMatchObject({ ok: true, attempts: 2 });
  });

  it.each([400, 404, 501])('does not retry a %i', async (status) => {
    const [outcome] = await run(
      [`${upstream.url}no-${status}?status=${status}`],
      {},
      { clock: recordingClock() },
    );
    expect(outcome).toMatchObject({ ok: false, attempts: 1, error: { code: 'HTTP_STATUS', status } });
    expect(upstream.hits(`/no-${status}`)).toBe(1);
  });

  it('makes maxAttempts attempts at most', async () => {
    const [outcome] = await run(
      [`${upstream.url}five?status=500`],
      { retries: { maxAttempts: 5 } },
      { clock: recordingClock() },
    );
    expect(outcome?.attempts).toBe(5);
    expect(upstream.hits('/five')).toBe(5);
  });

  it('does not replay a POST, but does when the item says retryUnsafe', async () => {
    const clock = recordingClock();
    const outcomes = await run(
      [
        { url: `${upstream.url}post-once?status=503`, method: 'POST', body: 'x' },
        { url: `${upstream.url}post-again?status=503`, method: 'POST', body: 'x', retryUnsafe: true },
      ],
      { concurrency: 2 },
      { clock },
    );
    const byPath = (path: string) => outcomes.find((outcome) => outcome.url.includes(path));
    expect(byPath('post-once')?.attempts).toBe(1);
    expect(byPath('post-again')?.attempts).toBe(3);
  });

  it('counts retries in progress', async () => {
    const values: number[] = [];
    await run(
      [`${upstream.url}counted?failFirst=2`],
      {},
      { clock: recordingClock(), onProgress: (progress) => values.push(progress.retries) },
    );
    expect(values.at(-1)).toBe(2);
  });
});

describe('Retry-After', () => {
  it('waits the seconds a 429 asks for', async () => {
    const clock = recordingClock();
    const [outcome] = await run(
      [`${upstream.url}throttle?failFirst=1&failStatus=429&retryAfter=7`],
      {},
      { clock },
    );
    expect(outcome).toMatchObject({ ok: true, attempts: 2 });
    expect(clock.sleeps).toEqual([7_000]);
  });

  it('waits until the HTTP date a 503 gives', async () => {
    const clock = recordingClock(Date.now());
    const [outcome] = await run(
      [`${upstream.url}dated?failFirst=1&failStatus=503&retryAfterIn=30`],
      {},
      { clock },
    );
    expect(outcome).toMatchObject({ ok: true, attempts: 2 });
    expect(clock.sleeps).toHaveLength(1);
    // the date has one-second precision and the request took a moment
    expect(clock.sleeps[0]).toBeGreaterThan(27_000);
    expect(clock.sleeps[0]).toBeLessThanOrEqual(30_000);
  });

  it('leaves the item pending when Retry-After does not fit before the deadline', async () => {
    const clock = recordingClock(1_000_000);
    const [outcome] = await run(
      [`${upstream.url}later?status=429&retryAfter=120`],
      {},
      { clock, deadline: 1_000_000 + 30_000 },
    );
    expect(outcome).toMatchObject({ ok: false, pending: true, attempts: 1 });
    expect(outcome && 'item' in outcome && outcome.item?.url).toBe(
      `${upstream.url}later?status=429&retryAfter=120`,
    );
    expect(clock.sleeps).toEqual([]);
  });
});
