// The per-origin scheduler: politeness per origin (adaptive limit, rate cap, Retry-After cooldown) and its manifest figures.
//
// Each attempt takes a permit for its origin, says when the request actually goes out (`sending()`: the
// rate cap counts sends, not grants, so a wait for a global slot can never bunch requests up), and
// gives the permit back with a report of how it went. Every origin's state is its own: one origin's
// trouble never slows another.
//
// Adaptive limit (why not plain AIMD): an origin that refuses the 11th concurrent request is a cliff,
// not a slope. Halving on every refusal and creeping back +1 per round trip keeps stepping off the
// cliff (about one 429 per 20 requests at a knee of 10) and runs at ~75% of the knee. So the limit
// remembers the knee, the concurrency the origin last refused minus one (TCP's ssthresh with a better
// estimate): below it, it grows +1 per answer (doubling per round trip); at it, it probes +1 only once
// per PROBE_ROUNDS round trips. A refusal cuts the limit multiplicatively, once per round trip (answers
// to requests sent before the cut do not cut again), and lowers the knee.
// A fresh origin gets a first window of min(perHost, 32), and goes to perHost (DESIGN: "cut on 429/503,
// grown back") as soon as an answer from it is a success with no refusal before it; not a TCP-style
// slow start: the operator's perHost is the bound they chose, and slow start from 4 cost every run two
// to three round trips per origin (S1, 10 waves: +20% wall). The price is at most one burst of 32: an
// origin whose knee is below it refuses the excess once, and the knee is learnt from those refusals.
import type { Clock } from './clock.ts';
import { MAX_RETRY_AFTER_MS } from './defaults.ts';
import type { HostStats } from './types.ts';

export interface HostSchedulerOptions {
  perHost: number;
  /** Requests per second per origin; null = no cap. */
  perHostRate: number | null;
  /** Cut the limit on 429/503, grow it back on success (within 1..perHost); false keeps it at perHost. */
  adaptive: boolean;
  /** The job's absolute deadline (clock ms): a cooldown reaching it turns the origin's waiters away. */
  deadline?: number;
  /**
   * This run's share of every origin's budget: perHost and perHostRate are divided by it. For runs that
   * hit the same origins at once (Distributed Map batches): K batches each given share K keep the
   * origin's total within the job's bounds. Default 1.
   */
  share?: number;
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
  /** The request goes out now: the rate cap counts from here. Idempotent. */
  sending(): void;
  /** Gives the permit back; idempotent. */
  release(report: AttemptReport): void;
}

export interface HostScheduler {
  /**
   * Waits for a permit for `origin`. Rejects with the signal's reason if it aborts first, and with a
   * HostCooldownError when the origin is cooling down past the deadline (the item is left pending).
   */
  acquire(origin: string, signal?: AbortSignal): Promise<HostPermit>;
  /** A permit at once, or null when the origin is at its limit (the engine's fast path: no promise). */
  tryAcquire(origin: string): HostPermit | null;
  stats(): Record<string, HostStats>;
  /** Cancels the scheduler's timers; waiters are the caller's to abort (by their signal). Idempotent. */
  close(): void;
}

/** The origin asked for a pause that ends at or after the job's deadline: waiting would be pointless. */
export class HostCooldownError extends Error {
  readonly untilMs: number;
  constructor(origin: string, untilMs: number) {
    super(`${origin} is cooling down (Retry-After) past the job's deadline`);
    this.name = 'HostCooldownError';
    this.untilMs = untilMs;
  }
}

/** Latencies kept per origin for p50/p95: a ring, so memory is fixed however many requests an origin gets. */
const LATENCY_SAMPLES = 1024;
const MAX_REPORTED_ORIGINS = 100;
/** The multiplicative cut on a refusal. */
const CUT_FACTOR = 0.5;
/**
 * A fresh origin's first window: a probe. Its first answer decides: a success before any refusal means
 * the origin took this many at once, and the limit goes to perHost; a refusal first means the knee is
 * below it, learnt from the refusals, and growth is +1 per answer from the cut. Measured (bench:polite,
 * knee 10, perHost 50): starting at perHost refused 48 of 2,000 requests (2.4%), all but ~8 in the first
 * burst. Growing +1 per answer from 32 instead of jumping cost S2 (C=100, 50 ms) about two round trips.
 */
const INITIAL_LIMIT = 32;
/** At the knee, one +1 probe per this many round trips: the probe is the refusal we pay to find more room. */
const PROBE_ROUNDS = 16;

interface Waiter {
  resolve(permit: HostPermit): void;
  reject(reason: unknown): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface HostState {
  origin: string;
  active: number;
  limit: number;
  /** The concurrency believed safe: fast growth below it, slow probes at it. */
  knee: number;
  /** No answer with a status yet: the first one decides how the first window grows (INITIAL_LIMIT). */
  probing: boolean;
  /** Answers counted toward the next probe. */
  credit: number;
  /** Permits granted so far; `cutSeq` is the count at the last cut (later grants saw the cut limit). */
  seq: number;
  cutSeq: number;
  /** Clock ms until which the origin asked us to pause (Retry-After); 0 = none. */
  cooldownUntil: number;
  /** Rate cap: the earliest clock ms of the next send, and permits granted but not yet sent (0 or 1). */
  nextSendAt: number;
  unsent: number;
  timerArmed: boolean;
  waiters: Waiter[];
  requests: number;
  succeeded: number;
  failed: number;
  throttled: number;
  latencies: Float64Array;
  samples: number;
}

export function createHostScheduler(options: HostSchedulerOptions, clock: Clock): HostScheduler {
  const share = options.share ?? 1;
  if (!(share >= 1) || !Number.isFinite(share)) throw new RangeError(`share: must be >= 1, got ${share}`);
  const maxLimit = Math.max(1, Math.floor(options.perHost / share));
  const intervalMs = options.perHostRate === null ? 0 : (1000 * share) / options.perHostRate;
  const rated = intervalMs > 0;
  const { adaptive, deadline } = options;
  const hosts = new Map<string, HostState>();
  const timers = new AbortController();

  // Most jobs send to one origin again and again: remember the last one (a compare, not a hash).
  let lastState: HostState | null = null;
  const stateOf = (origin: string): HostState => {
    if (lastState !== null && lastState.origin === origin) return lastState;
    let state = hosts.get(origin);
    if (state === undefined) {
      state = {
        origin,
        active: 0,
        limit: adaptive ? Math.min(maxLimit, INITIAL_LIMIT) : maxLimit,
        knee: maxLimit,
        probing: adaptive,
        credit: 0,
        seq: 0,
        cutSeq: 0,
        cooldownUntil: 0,
        nextSendAt: 0,
        unsent: 0,
        timerArmed: false,
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
    lastState = state;
    return state;
  };

  /** Wakes the origin's waiters at `ms` from now; one timer per origin (a later target re-arms on firing). */
  const arm = (state: HostState, ms: number): void => {
    if (state.timerArmed || timers.signal.aborted) return;
    state.timerArmed = true;
    void clock
      .sleep(ms, timers.signal)
      .then(() => {
        state.timerArmed = false;
        wake(state);
      })
      .catch(() => {
        state.timerArmed = false;
      });
  };

  /** The slow checks (cooldown, rate), only for origins that have one; arms the timer when time will tell. */
  const gateOpen = (state: HostState): boolean => {
    if (state.cooldownUntil !== 0) {
      const now = clock.now();
      if (now < state.cooldownUntil) {
        arm(state, state.cooldownUntil - now);
        return false;
      }
      state.cooldownUntil = 0;
    }
    if (rated) {
      if (state.unsent > 0) return false;
      const now = clock.now();
      if (now < state.nextSendAt) {
        arm(state, state.nextSendAt - now);
        return false;
      }
    }
    return true;
  };

  const canGrant = (state: HostState): boolean =>
    state.active < state.limit && ((!rated && state.cooldownUntil === 0) || gateOpen(state));

  const grant = (state: HostState): HostPermit => {
    state.active++;
    state.requests++;
    if (rated) state.unsent++;
    return new Permit(state, ++state.seq, state.active, !rated);
  };

  /** A permit per request: a class, so a grant costs one small object and no closures. */
  class Permit implements HostPermit {
    private readonly state: HostState;
    private readonly seq: number;
    private readonly activeAtGrant: number;
    private sent: boolean;
    private released = false;

    constructor(state: HostState, seq: number, activeAtGrant: number, sent: boolean) {
      this.state = state;
      this.seq = seq;
      this.activeAtGrant = activeAtGrant;
      this.sent = sent;
    }

    sending(): void {
      if (this.sent) return;
      this.sent = true;
      const state = this.state;
      state.unsent--;
      // GCRA without tolerance: sends are spaced by the interval, so any window T holds at most R*T + 1.
      state.nextSendAt = Math.max(state.nextSendAt, clock.now()) + intervalMs;
      wake(state);
    }

    release(report: AttemptReport): void {
      if (this.released) return;
      this.released = true;
      const state = this.state;
      if (!this.sent) {
        // Never sent (the job stopped first): it used no slot of the rate.
        this.sent = true;
        state.unsent--;
      }
      state.active--;
      if (report.ok) state.succeeded++;
      else state.failed++;
      if (report.throttled) state.throttled++;
      state.latencies[state.samples % LATENCY_SAMPLES] = report.latencyMs;
      state.samples++;
      if (adaptive) adapt(state, report, this.seq, this.activeAtGrant);
      if (report.throttled && report.retryAfterMs !== undefined && report.retryAfterMs > 0) {
        coolDown(state, report.retryAfterMs);
      }
      wake(state);
    }
  }

  const adapt = (state: HostState, report: AttemptReport, seq: number, activeAtGrant: number): void => {
    if (report.throttled) {
      state.probing = false;
      // It refused the activeAtGrant-th concurrent request: one fewer is the best guess of its knee.
      state.knee = Math.max(1, Math.min(state.knee, activeAtGrant - 1));
      if (seq > state.cutSeq) {
        // Never back above what it just refused: the knee is the better bound once it has spoken.
        state.limit = Math.max(1, Math.min(state.knee, Math.floor(state.limit * CUT_FACTOR)));
        state.cutSeq = state.seq;
        state.credit = 0;
      }
      return;
    }
    // No answer at all (connection, timeout) says nothing about how much the origin will take.
    if (report.status === undefined) return;
    if (state.probing) {
      state.probing = false;
      state.limit = state.knee;
      return;
    }
    if (state.limit < state.knee) {
      state.limit++;
      return;
    }
    if (state.limit >= maxLimit) return;
    if (++state.credit >= state.limit * PROBE_ROUNDS) {
      state.credit = 0;
      state.limit++;
      state.knee = state.limit;
    }
  };

  const coolDown = (state: HostState, retryAfterMs: number): void => {
    const until = clock.now() + Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
    if (until <= state.cooldownUntil) return;
    state.cooldownUntil = until;
    if (deadline !== undefined && until >= deadline) {
      // Sleeping past the deadline inside Lambda buys nothing: the waiters go back as pending now.
      for (const waiter of state.waiters.splice(0)) {
        if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
        waiter.reject(new HostCooldownError(state.origin, until));
      }
    }
  };

  const wake = (state: HostState): void => {
    while (state.waiters.length > 0 && canGrant(state)) {
      const waiter = state.waiters.shift() as Waiter;
      if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
      waiter.resolve(grant(state));
    }
  };

  return {
    tryAcquire(origin) {
      const state = stateOf(origin);
      return state.waiters.length === 0 && canGrant(state) ? grant(state) : null;
    },
    acquire(origin, signal) {
      const state = stateOf(origin);
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (deadline !== undefined && state.cooldownUntil >= deadline) {
        return Promise.reject(new HostCooldownError(origin, state.cooldownUntil));
      }
      if (state.waiters.length === 0 && canGrant(state)) return Promise.resolve(grant(state));
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
      const busiest = [...hosts.values()]
        .filter((state) => state.requests > 0)
        .sort((a, b) => b.requests - a.requests)
        .slice(0, MAX_REPORTED_ORIGINS);
      const out: Record<string, HostStats> = {};
      for (const state of busiest) {
        const sorted = state.latencies.slice(0, Math.min(state.samples, LATENCY_SAMPLES)).sort();
        out[state.origin] = {
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
    close() {
      timers.abort();
    },
  };
}

/** Nearest-rank percentile of sorted samples, rounded to 0.1 ms; 0 when there are none. */
function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1);
  return Math.round((sorted[Math.max(0, index)] ?? 0) * 10) / 10;
}
