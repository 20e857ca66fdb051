// decideRetry: which failures are retried, how long the wait is, and when an item is left pending.
import { describe, expect, it } from 'vitest';
import { MAX_RETRY_AFTER_MS } from '../../functions/core/defaults.ts';
import type { ErrorCode } from '../../functions/core/errors.ts';
import {
  type AttemptFailure,
  backoffMs,
  decideRetry,
  isRetryable,
  parseRetryAfter,
  type RetryInput,
} from '../../functions/core/retry.ts';

const policy = { maxAttempts: 3, baseMs: 200, maxMs: 20_000 };
const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
const input = (failure: AttemptFailure, extra: Partial<RetryInput> = {}): RetryInput => ({
  attempts: 1,
  method: 'GET',
  failure,
  now: NOW,
  random: () => 0.5,
  ...extra,
});

describe('isRetryable', () => {
  it.each<[string, AttemptFailure, boolean]>([
    ['a connection failure', { code: 'CONNECTION' }, true],
    ['a connect timeout', { code: 'TIMEOUT_CONNECT' }, true],
    ['a headers timeout', { code: 'TIMEOUT_HEADERS' }, true],
    ['a body timeout', { code: 'TIMEOUT_BODY' }, true],
    ['a total timeout', { code: 'TIMEOUT_TOTAL' }, true],
    ['a temporary DNS failure', { code: 'DNS', temporary: true }, true],
    ['a permanent DNS failure', { code: 'DNS' }, false],
    ['408', { code: 'HTTP_STATUS', status: 408 }, true],
    ['425', { code: 'HTTP_STATUS', status: 425 }, true],
    ['429', { code: 'HTTP_STATUS', status: 429 }, true],
    ['500', { code: 'HTTP_STATUS', status: 500 }, true],
    ['503', { code: 'HTTP_STATUS', status: 503 }, true],
    ['599', { code: 'HTTP_STATUS', status: 599 }, true],
    ['501', { code: 'HTTP_STATUS', status: 501 }, false],
    ['404', { code: 'HTTP_STATUS', status: 404 }, false],
    ['400', { code: 'HTTP_STATUS', status: 400 }, false],
    ['a blocked destination', { code: 'BLOCKED_DESTINATION' }, false],
    ['a too large body', { code: 'BODY_TOO_LARGE' }, false],
    ['bad content', { code: 'BAD_CONTENT' }, false],
    ['too many redirects', { code: 'TOO_MANY_REDIRECTS' }, false],
    ['a transform error', { code: 'TRANSFORM_ERROR' }, false],
    ['an abort', { code: 'ABORTED' }, false],
  ])('%s -> %s', (_name, failure, expected) => {
    expect(isRetryable(failure)).toBe(expected);
  });
});

describe('parseRetryAfter', () => {
  it.each<[string | null | undefined, number | null]>([
    ['0', 0],
    ['2', 2_000],
    [' 120 ', 120_000],
    [new Date(NOW + 5_000).toUTCString(), 5_000],
    [new Date(NOW - 5_000).toUTCString(), 0],
    ['soon', null],
    ['-3', null],
    ['1.5', null],
    ['', null],
    [null, null],
    [undefined, null],
  ])('%s -> %s ms', (value, expected) => {
    expect(parseRetryAfter(value, NOW)).toBe(expected);
  });
});

describe('parseRetryAfter in another local zone', () => {
  it('reads all three HTTP date forms as GMT (asctime names no zone)', () => {
    const saved = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      const now = Date.UTC(1994, 10, 6, 8, 49, 0);
      expect(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', now)).toBe(37_000);
      expect(parseRetryAfter('Sunday, 06-Nov-94 08:49:37 GMT', now)).toBe(37_000);
      expect(parseRetryAfter('Sun Nov  6 08:49:37 1994', now)).toBe(37_000);
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});

describe('backoffMs', () => {
  it('grows exponentially under full jitter and stays below maxMs', () => {
    const top = () => 0.999_999;
    expect(backoffMs(policy, 1, top)).toBe(199);
    expect(backoffMs(policy, 2, top)).toBe(399);
    expect(backoffMs(policy, 3, top)).toBe(799);
    expect(backoffMs(policy, 20, top)).toBe(19_999);
    expect(backoffMs(policy, 3, () => 0)).toBe(0);
  });
});

describe('decideRetry', () => {
  it('retries a retryable failure with the jittered backoff', () => {
    expect(decideRetry(policy, input({ code: 'HTTP_STATUS', status: 503 }))).toEqual({
      action: 'retry',
      delayMs: 100,
      source: 'backoff',
    });
  });

  it.each<[string, AttemptFailure]>([
    ['404', { code: 'HTTP_STATUS', status: 404 }],
    ['501', { code: 'HTTP_STATUS', status: 501 }],
    ['BLOCKED_DESTINATION', { code: 'BLOCKED_DESTINATION' }],
  ])('stops on the non-retryable %s', (_name, failure) => {
    expect(decideRetry(policy, input(failure))).toEqual({ action: 'stop' });
  });

  it('stops once maxAttempts attempts were made', () => {
    expect(decideRetry(policy, input({ code: 'CONNECTION' }, { attempts: 3 }))).toEqual({ action: 'stop' });
    expect(decideRetry(policy, input({ code: 'CONNECTION' }, { attempts: 2 })).action).toBe('retry');
  });

  it.each(['POST', 'PATCH'])('never replays a %s unless the item opts in with retryUnsafe', (method) => {
    expect(decideRetry(policy, input({ code: 'CONNECTION' }, { method }))).toEqual({ action: 'stop' });
    expect(decideRetry(policy, input({ code: 'CONNECTION' }, { method, retryUnsafe: true })).action).toBe(
      'retry',
    );
  });

  it.each(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'])('retries the idempotent %s', (method) => {
    expect(decideRetry(policy, input({ code: 'TIMEOUT_TOTAL' }, { method })).action).toBe('retry');
  });

  it('lets Retry-After in seconds replace the backoff, even above maxMs', () => {
    const small = { ...policy, maxMs: 1_000 };
    expect(decideRetry(small, input({ code: 'HTTP_STATUS', status: 429, retryAfter: '7' }))).toEqual({
      action: 'retry',
      delayMs: 7_000,
      source: 'retry-after',
    });
  });

  it('honours Retry-After as an HTTP date', () => {
    const retryAfter = new Date(NOW + 3_000).toUTCString();
    expect(decideRetry(policy, input({ code: 'HTTP_STATUS', status: 503, retryAfter }))).toMatchObject({
      action: 'retry',
      delayMs: 3_000,
    });
  });

  it('caps Retry-After at a minute', () => {
    expect(
      decideRetry(policy, input({ code: 'HTTP_STATUS', status: 503, retryAfter: '3600' })),
    ).toMatchObject({
      action: 'retry',
      delayMs: MAX_RETRY_AFTER_MS,
    });
  });

  it('falls back to the backoff when Retry-After is unparseable', () => {
    expect(
      decideRetry(policy, input({ code: 'HTTP_STATUS', status: 503, retryAfter: 'later' })),
    ).toMatchObject({
      source: 'backoff',
    });
  });

  it('leaves the item pending when the wait does not fit before the deadline', () => {
    const failure: AttemptFailure = { code: 'HTTP_STATUS', status: 429, retryAfter: '10' };
    expect(decideRetry(policy, input(failure, { deadline: NOW + 5_000 }))).toEqual({
      action: 'pending',
      delayMs: 10_000,
    });
    expect(decideRetry(policy, input(failure, { deadline: NOW + 20_000 })).action).toBe('retry');
  });

  it('does not leave a non-retryable failure pending, whatever the deadline', () => {
    const code: ErrorCode = 'HTTP_STATUS';
    expect(decideRetry(policy, input({ code, status: 404 }, { deadline: NOW }))).toEqual({ action: 'stop' });
  });
});
