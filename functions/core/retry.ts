// The retry policy as a pure function over data: which failures are retried, how long to wait, when to give up.
//
// Why hand-written: p-retry wraps a promise-returning function (it owns the loop and the sleep), and
// undici's RetryHandler is a dispatcher; neither answers "given this failure, this Retry-After, this
// deadline: retry after how long, stop, or leave pending?" as a function of plain data, which is what
// the engine needs to keep the deadline and the per-host cooldowns in one place and to test without
// sleeping. So the decision lives here and the engine does the waiting.
import { IDEMPOTENT_METHODS, MAX_RETRY_AFTER_MS } from './defaults.ts';
import type { ErrorCode } from './errors.ts';

export interface RetryPolicy {
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
}

/** What went wrong in the attempt just made. */
export interface AttemptFailure {
  code: ErrorCode;
  status?: number;
  /** The raw Retry-After header of the response, if any. */
  retryAfter?: string | null;
  /** For DNS: the resolver failed temporarily (EAI_AGAIN), so another try may succeed. */
  temporary?: boolean;
}

export interface RetryInput {
  /** Attempts already made, including the one that just failed (>= 1). */
  attempts: number;
  method: string;
  retryUnsafe?: boolean;
  failure: AttemptFailure;
  /** Clock time now and the job's absolute deadline (ms since epoch), if any. */
  now: number;
  deadline?: number;
  /** Uniform in [0, 1): injected so tests can pin the jitter. */
  random: () => number;
}

export type RetryDecision =
  | { action: 'retry'; delayMs: number; source: 'backoff' | 'retry-after' }
  | { action: 'stop' }
  /** Retryable, but the wait does not fit before the deadline: a later run resumes the item. */
  | { action: 'pending'; delayMs: number };

const RETRYABLE_CODES: ReadonlySet<ErrorCode> = new Set([
  'CONNECTION',
  'TIMEOUT_CONNECT',
  'TIMEOUT_HEADERS',
  'TIMEOUT_BODY',
  'TIMEOUT_TOTAL',
]);

/** 408 Request Timeout, 425 Too Early, 429 Too Many Requests and 5xx except 501 Not Implemented. */
export function isRetryableStatus(status: number): boolean {
  return (
    status === 408 || status === 425 || status === 429 || (status >= 500 && status <= 599 && status !== 501)
  );
}

export function isRetryable(failure: AttemptFailure): boolean {
  if (RETRYABLE_CODES.has(failure.code)) return true;
  if (failure.code === 'DNS') return failure.temporary === true;
  if (failure.code === 'HTTP_STATUS')
    return failure.status !== undefined && isRetryableStatus(failure.status);
  return false;
}

/** The asctime form of an HTTP date ("Sun Nov  6 08:49:37 1994"), the one that names no zone. */
const ASCTIME = /^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

/**
 * Retry-After as a delay in ms: delta-seconds or an HTTP date (RFC 9110 §10.2.3), judged against `now`.
 * Returns null when absent or unparseable (then the backoff applies); a date in the past means 0.
 */
export function parseRetryAfter(value: string | null | undefined, now: number): number | null {
  if (value === null || value === undefined) return null;
  const text = value.trim();
  if (text === '') return null;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // HTTP dates always name the month; without this, V8's lenient Date.parse reads "-3" or "1.5" as dates.
  if (!/[A-Za-z]{3}/.test(text)) return null;
  // asctime ("Sun Nov  6 08:49:37 1994") names no zone: HTTP dates are GMT, Date.parse would take local.
  const date = Date.parse(ASCTIME.test(text) ? `${text} GMT` : text);
  if (Number.isNaN(date)) return null;
  return Math.max(0, date - now);
}

/** Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): uniform in [0, min(maxMs, base*2^n)). */
export function backoffMs(policy: RetryPolicy, attempts: number, random: () => number): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.floor(random() * ceiling);
}

export function decideRetry(policy: RetryPolicy, input: RetryInput): RetryDecision {
  const { failure } = input;
  if (!isRetryable(failure)) return { action: 'stop' };
  // Replaying a POST may do its side effect twice: only when the item says it is safe.
  if (!IDEMPOTENT_METHODS.has(input.method) && !input.retryUnsafe) return { action: 'stop' };
  if (input.attempts >= policy.maxAttempts) return { action: 'stop' };

  const retryAfterMs = parseRetryAfter(failure.retryAfter, input.now);
  // A server's Retry-After replaces our backoff even above maxMs (it knows its own load), but a
  // minute is the most we ever wait for anyone.
  const delayMs =
    retryAfterMs === null
      ? backoffMs(policy, input.attempts, input.random)
      : Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
  if (input.deadline !== undefined && input.now + delayMs >= input.deadline) {
    return { action: 'pending', delayMs };
  }
  return { action: 'retry', delayMs, source: retryAfterMs === null ? 'backoff' : 'retry-after' };
}
