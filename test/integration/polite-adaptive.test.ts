// The adaptive per-origin limit against an origin that refuses above K in flight: converges, stays per origin, can be turned off.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFanOut } from '../../functions/core/engine.ts';
import { parseItems, parseOptions } from '../../functions/core/job.ts';
import type { HostStats, Outcome } from '../../functions/core/types.ts';
import { startThrottlingUpstream, type ThrottlingUpstream } from '../support/throttling-upstream.ts';

const KNEE = 4;
let upstream: ThrottlingUpstream;
let throttled: string;
let healthy: string;

beforeAll(async () => {
  // No Retry-After: a concurrency cap has no time to name, so only the limit can keep refusals rare.
  upstream = await startThrottlingUpstream({ origins: 2, latencyMs: 15, retryAfter: null });
  [throttled, healthy] = upstream.originList as [string, string];
  upstream.configure(throttled, { maxInFlight: KNEE });
});
afterAll(async () => {
  await upstream.close();
});
beforeEach(() => upstream.reset());

async function run(
  urls: string[],
  options: Record<string, unknown>,
): Promise<{ outcomes: Outcome[]; hosts: Record<string, HostStats> }> {
  const fanOut = startFanOut(
    parseItems(urls).items,
    parseOptions({ concurrency: 16, perHost: 16, retries: { maxAttempts: 10 }, ...options }),
    { allow: ['127.0.0.1'] },
  );
  const outcomes: Outcome[] = [];
  for await (const outcome of fanOut.outcomes) outcomes.push(outcome);
  return { outcomes, hosts: fanOut.hostStats() };
}

const urlsFor = (origin: string, count: number): string[] =>
  Array.from({ length: count }, (_, index) => `${origin}/item/${index}`);

describe('adaptive per-origin limit', () => {
  it('converges at the origin’s knee with under 5% of requests refused', async () => {
    const { outcomes, hosts } = await run(urlsFor(throttled, 400), {});
    expect(outcomes.filter((outcome) => outcome.ok)).toHaveLength(400);
    const server = upstream.counters(throttled);
    expect(server.throttled).toBeGreaterThan(0);
    expect(server.throttled / server.requests).toBeLessThan(0.05);
    const stats = hosts[throttled];
    expect(stats?.finalLimit).toBeGreaterThanOrEqual(1);
    // At the knee, or one above it after a probe that no request has tried yet.
    expect(stats?.finalLimit).toBeLessThanOrEqual(KNEE + 1);
    expect(stats?.throttled).toBe(server.throttled);
    expect(stats?.requests).toBe(server.requests);
  });

  it('keeps the fixed limit with adaptive: false, and pays for it in refusals', async () => {
    const { outcomes, hosts } = await run(urlsFor(throttled, 200), { adaptive: false, perHost: 12 });
    expect(outcomes.filter((outcome) => outcome.ok)).toHaveLength(200);
    expect(hosts[throttled]?.finalLimit).toBe(12);
    const server = upstream.counters(throttled);
    expect(server.throttled / server.requests).toBeGreaterThan(0.2);
  });

  it('grows a healthy origin to perHost while another origin is cut', async () => {
    const urls = urlsFor(throttled, 120).flatMap((url, index) => [url, `${healthy}/item/${index}`]);
    const { outcomes, hosts } = await run(urls, { perHost: 8 });
    expect(outcomes.filter((outcome) => outcome.ok)).toHaveLength(240);
    expect(hosts[healthy]).toMatchObject({ requests: 120, throttled: 0, finalLimit: 8 });
    expect(upstream.counters(healthy).maxInFlight).toBe(8);
    expect(hosts[throttled]?.finalLimit).toBeLessThanOrEqual(KNEE + 1);
    expect(hosts[throttled]?.throttled).toBeGreaterThan(0);
  });
});
