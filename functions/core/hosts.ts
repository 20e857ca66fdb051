// The per-origin scheduler: a concurrency bound per origin and the per-origin figures of the manifest.
//
// Each attempt takes a permit for its origin and gives it back with a report of how it went. The report
// carries everything a politeness policy needs (status, throttled, Retry-After, latency), so adaptive
// limits, rate caps and host-wide cooldowns can live here later without the engine changing.
import type { Clock } from './clock.ts';
import type { HostStats } from './types.ts';

export interface HostSchedulerOptions {
  perHost: number;
  /** Requests per second per origin; null = no cap (the cap is not enforced yet). */
  perHostRate: number | null;
  /** Cut the limit on 429/503, grow it back on success (not enforced yet: the limit stays perHost). */
  adaptive: boolean;
}

export interface AttemptReport {
  /** The attempt ended with a 2xx/3xx response. */
  ok: boolean;
  status?: number;
  /** 429 or 503: the origin asked us to slow down. */
  throttled: boolean;
  /** The origin's Retry-After, in ms from now, if it sent one. */
  retryAfterMs?: number;
  latencyMs: number;
}

export interface HostPermit {
  /** Gives the permit back; idempotent. */
  release(report: AttemptReport): void;
}

export interface HostScheduler {
  /** Waits for a permit for `origin`; rejects with the signal's reason if it aborts first. */
  acquire(origin: string, signal?: AbortSignal): Promise<HostPermit>;
  /** A permit at once, or null when the origin is at its limit (the engine's fast path: no promise). */
  tryAcquire(origin: string): HostPermit | null;
  stats(): Record<string, HostStats>;
}

/** Latencies kept per origin for p50/p95: a ring, so memory is fixed however many requests an origin gets. */
const LATENCY_SAMPLES = 1024;
const MAX_REPORTED_ORIGINS = 100;

interface Waiter {
  resolve(permit: HostPermit): void;
  reject(reason: unknown): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface HostState {
  active: number;
  limit: number;
  waiters: Waiter[];
  requests: number;
  succeeded: number;
  failed: number;
  throttled: number;
  latencies: Float64Array;
  samples: number;
}

export function createHostScheduler(options: HostSchedulerOptions, _clock?: Clock): HostScheduler {
  const hosts = new Map<string, HostState>();

  const stateOf = (origin: string): HostState => {
    let state = hosts.get(origin);
    if (state === undefined) {
      state = {
        active: 0,
        limit: options.perHost,
        waiters: [],
        requests: 0,
        succeeded: 0,
        failed: 0,
        throttled: 0,
        latencies: new Float64Array(LATENCY_SAMPLES),
        samples: 0,
      };
      hosts.set(origin, state);
    }
    return state;
  };

  const grant = (state: HostState): HostPermit => {
    state.active++;
    state.requests++;
    let released = false;
    return {
      release(report) {
        if (released) return;
        released = true;
        state.active--;
        if (report.ok) state.succeeded++;
        else state.failed++;
        if (report.throttled) state.throttled++;
        state.latencies[state.samples % LATENCY_SAMPLES] = report.latencyMs;
        state.samples++;
        wake(state);
      },
    };
  };

  const wake = (state: HostState): void => {
    while (state.active < state.limit && state.waiters.length > 0) {
      const waiter = state.waiters.shift() as Waiter;
      if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
      waiter.resolve(grant(state));
    }
  };

  return {
    tryAcquire(origin) {
      const state = stateOf(origin);
      return state.active < state.limit && state.waiters.length === 0 ? grant(state) : null;
    },
    acquire(origin, signal) {
      const state = stateOf(origin);
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (state.active < state.limit && state.waiters.length === 0) return Promise.resolve(grant(state));
      return new Promise<HostPermit>((resolve, reject) => {
        const waiter: Waiter = { resolve, reject, signal, onAbort: undefined };
        if (signal) {
          waiter.onAbort = () => {
            const index = state.waiters.indexOf(waiter);
            if (index >= 0) state.waiters.splice(index, 1);
            reject(signal.reason);
          };
          signal.addEventListener('abort', waiter.onAbort, { once: true });
        }
        state.waiters.push(waiter);
      });
    },
    stats() {
      const busiest = [...hosts.entries()]
        .sort((a, b) => b[1].requests - a[1].requests)
        .slice(0, MAX_REPORTED_ORIGINS);
      const out: Record<string, HostStats> = {};
      for (const [origin, state] of busiest) {
        const sorted = state.latencies.slice(0, Math.min(state.samples, LATENCY_SAMPLES)).sort();
        out[origin] = {
          requests: state.requests,
          succeeded: state.succeeded,
          failed: state.failed,
          throttled: state.throttled,
          p50Ms: percentile(sorted, 0.5),
          p95Ms: percentile(sorted, 0.95),
          finalLimit: state.limit,
        };
      }
      return out;
    },
  };
}

/** Nearest-rank percentile of sorted samples, rounded to 0.1 ms; 0 when there are none. */
function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1);
  return Math.round((sorted[Math.max(0, index)] ?? 0) * 10) / 10;
}
