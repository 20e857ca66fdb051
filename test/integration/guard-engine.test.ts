// The guard inside the engine: blocked items and redirects fail with BLOCKED_DESTINATION and zero hits; "private" opens loopback.
import { isIP } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fanOut } from '../../functions/core/engine.ts';
import type { LookupAll, Outcome, Runtime } from '../../functions/core/types.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let upstream: Upstream;

/** Every name resolves to 127.0.0.1: the upstream, or nothing at all when the guard does its job. */
const lookupToLoopback: LookupAll = async (hostname) => {
  if (isIP(hostname) !== 0) throw new Error(`lookup called for a literal: ${hostname}`);
  return [{ address: '127.0.0.1', family: 4 }];
};

async function run(items: unknown[], runtime: Runtime): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for await (const outcome of fanOut(items, { retries: { maxAttempts: 1 } }, runtime)) outcomes.push(outcome);
  return outcomes;
}

function redirectTo(location: string, path = '/hop'): string {
  return `${upstream.origin}${path}?location=${encodeURIComponent(location)}`;
}

beforeAll(async () => {
  upstream = await startUpstream();
});

afterAll(async () => {
  await upstream.close();
});

beforeEach(() => {
  upstream.reset();
});

describe('fanOut under the default policy', () => {
  it('fails an item on loopback with BLOCKED_DESTINATION and never reaches the upstream', async () => {
    const outcomes = await run([`${upstream.origin}/item/1`, `http://127.1:${upstream.port}/item/2`], {});
    expect(outcomes).toHaveLength(2);
    for (const outcome of outcomes) {
      expect(outcome.ok).toBe(false);
      if (outcome.ok || outcome.pending) throw new Error('expected a failed outcome');
      expect(outcome.error.code).toBe('BLOCKED_DESTINATION');
      expect(outcome.error.message).toMatch(/127\.0\.0\.1 is loopback/);
    }
    expect(upstream.hits()).toBe(0);
  });

  it('fails a name that resolves to loopback in the connector, with zero hits', async () => {
    const outcomes = await run([`http://app.test:${upstream.port}/item/1`], {
      lookup: lookupToLoopback,
      allowedPorts: [80, 443, upstream.port],
    });
    expect(outcomes[0]).toMatchObject({ ok: false, error: { code: 'BLOCKED_DESTINATION' } });
    expect(upstream.hits()).toBe(0);
  });
});

describe('fanOut follows redirects through the same policy', () => {
  // The first hop is an operator-allowed name (resolving to the upstream); the redirect targets are not allowed.
  const runtime: Runtime = { allow: ['entry.test'], lookup: lookupToLoopback };
  const entry = (location: string): string =>
    redirectTo(location).replace(upstream.origin, `http://entry.test:${upstream.port}`);

  it.each([
    { target: () => `http://127.0.0.1:${upstream.port}/landing`, rule: /127\.0\.0\.1 is loopback/ },
    { target: () => `http://[::ffff:127.0.0.1]:${upstream.port}/landing`, rule: /IPv4-mapped 127\.0\.0\.1/ },
    { target: () => `http://localhost:${upstream.port}/landing`, rule: /loopback name/ },
    { target: () => 'http://169.254.169.254/latest/meta-data/', rule: /link-local/ },
    { target: () => 'file:///etc/passwd', rule: /file/ },
  ])('refuses a redirect to $target', async ({ target, rule }) => {
    const outcomes = await run([entry(target())], runtime);
    expect(outcomes[0]).toMatchObject({ ok: false, error: { code: 'BLOCKED_DESTINATION' } });
    const outcome = outcomes[0];
    if (outcome === undefined || outcome.ok || outcome.pending) throw new Error('expected a failed outcome');
    expect(outcome.error.message).toMatch(rule);
    expect(upstream.hits('/hop')).toBe(1);
    expect(upstream.hits('/landing')).toBe(0);
  });
});

describe('fanOut with loopback allowed by the operator', () => {
  it('reaches the upstream with allow: ["private"], literal and named, and follows a loopback redirect', async () => {
    const outcomes = await run(
      [
        `${upstream.origin}/item/1`,
        `http://localhost:${upstream.port}/item/2`,
        redirectTo(`http://127.0.0.1:${upstream.port}/landing`),
      ],
      { allow: ['private'], lookup: lookupToLoopback },
    );
    expect(outcomes.map((outcome) => outcome.ok)).toEqual([true, true, true]);
    expect(outcomes.every((outcome) => outcome.ok && outcome.status === 200)).toBe(true);
    expect(upstream.hits('/item/1')).toBe(1);
    expect(upstream.hits('/item/2')).toBe(1);
    expect(upstream.hits('/landing')).toBe(1);
  });

  it('reaches the upstream with the upstream address allowed explicitly', async () => {
    const outcomes = await run([`${upstream.origin}/item/3`], { allow: ['127.0.0.1'] });
    expect(outcomes[0]).toMatchObject({ ok: true, status: 200 });
    expect(upstream.hits('/item/3')).toBe(1);
  });

  it('still refuses link-local with "private"', async () => {
    const outcomes = await run([redirectTo('http://169.254.169.254/latest/meta-data/')], {
      allow: ['private'],
    });
    expect(outcomes[0]).toMatchObject({ ok: false, error: { code: 'BLOCKED_DESTINATION' } });
    expect(upstream.hits('/hop')).toBe(1);
  });
});

describe('a job cannot relax the policy', () => {
  it('rejects an "allow" key in the job options', () => {
    expect(() => fanOut([`${upstream.origin}/item/1`], { allow: ['private'] }, {})).toThrow(/allow/);
  });
});

describe('the benchmark-only seam (bench:engine fanout-noguard)', () => {
  it('is the only way past the policy: without it loopback is blocked, with it the same items arrive', async () => {
    const items = [`${upstream.origin}/item/1`, `${upstream.origin}/item/2`];
    const guarded = await run(items, {});
    expect(
      guarded.every(
        (outcome) => !outcome.ok && !outcome.pending && outcome.error.code === 'BLOCKED_DESTINATION',
      ),
    ).toBe(true);
    expect(upstream.hits()).toBe(0);

    const outcomes: Outcome[] = [];
    for await (const outcome of fanOut(items, {}, { benchmarkWithoutGuard: true })) outcomes.push(outcome);
    expect(outcomes.map((outcome) => outcome.ok)).toEqual([true, true]);
    expect(upstream.hits()).toBe(2);
  });

  it('is set by nothing but the benchmark contender', async () => {
    const { execFileSync } = await import('node:child_process');
    const hits = execFileSync('grep', ['-rl', 'benchmarkWithoutGuard', 'functions', 'infra', 'benchmarks'], {
      encoding: 'utf8',
    })
      .trim()
      .split('\n')
      .sort();
    expect(hits).toEqual(['benchmarks/fanout-contender.mjs', 'functions/core/engine.ts']);
  });
});
