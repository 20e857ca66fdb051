// The fan-out engine: lazy intake, global and per-origin bounds, retries, redirects, modes and the job deadline.
//
// Bounds: p-limit semantics (an item holds its slot from intake to outcome, through retries and the
// transform, so buffered bodies stay bounded by concurrency), kept as a plain counter because the pump
// admits items lazily from a possibly endless source: p-limit would need a promise per item and its
// queue is unbounded. A second counter bounds requests per hop (a stop must be able to release its
// waiters), and the per-origin bound is hosts.ts. Outcomes waiting for the consumer are bounded too:
// memory scales with concurrency, never with the number of items.
//
// Politeness (hosts.ts) makes some origins wait: for a permit, a cooldown, a rate slot, or a retry. An
// item waiting like that steps aside (`parked`) so intake goes on and other origins keep their pace;
// parked items are bounded too (PARKED_PER_SLOT per slot of concurrency).

import type { Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { type Duplex, duplexPair } from 'node:stream';
import type { buildConnector } from 'undici';
import connectorFactory from 'undici/lib/core/connect.js';
import Agent from 'undici/lib/dispatcher/agent.js';
import { type Clock, systemClock } from './clock.ts';
import { FAILURE_RATIO_MIN_FINISHED } from './defaults.ts';
import type { ErrorCode, ItemError } from './errors.ts';
import { createDestinationGuard, type DestinationGuardOptions } from './guard.ts';
import {
  type AttemptReport,
  createHostScheduler,
  type HostPermit,
  type HostSchedulerOptions,
} from './hosts.ts';
import { createHttpClient, type HttpResponse, headerValue } from './http.ts';
import { type JobOptions, normalizeUrl, parseItems, parseOptions, type TransformSpec } from './job.ts';
import { decideRetry, parseRetryAfter } from './retry.ts';
import { applyCheapTransform } from './transforms/inline.ts';
import type {
  FetchedResponse,
  HostStats,
  Item,
  Outcome,
  PendingOutcome,
  Progress,
  Runtime,
  TransformResult,
  TransformRunner,
} from './types.ts';

/** A running fan-out: outcomes in completion order, plus live figures for the manifest and progress. */
export interface FanOutRun {
  outcomes: AsyncIterableIterator<Outcome>;
  progress(): Progress;
  /** Per-origin figures for the manifest (the 100 busiest origins). */
  hostStats(): Record<string, HostStats>;
}

const PROGRESS_INTERVAL_MS = 100;
/** Guard verdicts kept per run (by origin); past this the cache starts over rather than grow. */
const MAX_CACHED_VERDICTS = 10_000;
/** Items waiting on a busy origin (or a retry) that do not hold an intake slot, per slot of concurrency. */
const PARKED_PER_SLOT = 4;
/** The longest delay setTimeout takes as given (a signed 32-bit count of ms). */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/** The engine's runtime: the job's, plus what a caller that splits a job across runs decides. */
export type EngineRuntime = Runtime & {
  /** This run's share of every origin's budget (perHost and perHostRate divided by it); default 1. */
  hostShare?: number;
  /**
   * BENCHMARK ONLY (bench:engine's `fanout-noguard`, to measure what the destination guard costs): no
   * URL check and undici's plain connector, so any address is reached. No handler, CLI flag or
   * environment variable sets it; never set it anywhere else.
   */
  benchmarkWithoutGuard?: true;
  /**
   * Keep, for each succeeded outcome whose value is its whole JSON body, the text it was parsed from
   * (read with exactJsonOf). The store sets it: it writes that text instead of re-serializing the value.
   */
  keepExactJson?: true;
  /** The import-time warm-up's in-memory transport (module-private: nothing outside this file can set it). */
  [warmUpTransport]?: buildConnector.connector;
};
const warmUpTransport = Symbol('warm-up transport');

/**
 * What the run's idle sockets are destroyed with. Node's streams read an error's `stack` when a stream is
 * destroyed with it, and undici makes a fresh ClientDestroyedError when given none: under
 * --enable-source-maps (our Lambda functions) the first stack formatted parses the bundle's whole source
 * map, ~100 ms of one job's end (or of the warm-up). This one's stack is a plain string, never formatted.
 */
const RUN_ENDED: Error = Object.defineProperty(new Error('fan-out ended: idle connections closed'), 'stack', {
  value: 'Error: fan-out ended: idle connections closed',
  writable: true,
  configurable: true,
});

/**
 * Where a succeeded outcome carries the JSON text its value was parsed from (runtime.keepExactJson). A
 * module-private key: in no public type, and JSON.stringify skips it. Not a WeakMap: a set per item cost
 * ~1 µs of the store's 10-15 µs per result, plus ephemeron work in every GC (bench:store, profiled).
 */
const EXACT_JSON = Symbol('exact JSON');
type WithExactJson = Outcome & { [EXACT_JSON]?: string };

/**
 * The JSON text a succeeded outcome's value was parsed from, exactly as the origin sent it (decoded), when
 * the run kept it (runtime.keepExactJson) and the value is the whole body. Writing that text instead of
 * JSON.stringify(value) keeps what a parse loses (integers beyond 2^53, number spelling, key order of
 * duplicates) and skips a serialization per item. It may span lines: only whitespace can (JSON strings
 * hold no raw line breaks), so a line-oriented writer may turn CR and LF into spaces.
 */
export function exactJsonOf(outcome: Outcome): string | undefined {
  return (outcome as WithExactJson)[EXACT_JSON];
}
const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** Credentials never follow a redirect to another origin. */
const CROSS_ORIGIN_DROPPED_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

type StopReason = 'fail-fast' | 'failure-ratio' | 'deadline' | 'signal' | 'consumer';

/**
 * Once per process, at import: zod compiles a schema's parser on its first use and V8 compiles a code
 * path on its first run, together ~15-20 ms (the options schema alone ~9 ms, the guard's ~5 ms). Paid
 * here, that lands where Lambda runs module scope (its init phase) instead of in the first job's first
 * wave. Pure: no I/O, no timers, nothing kept.
 */
function warmUpParsers(): void {
  try {
    parseOptions({ transform: { name: 'json' } });
    parseItems(['http://warm-up.invalid/']);
    createDestinationGuard({ connectTimeoutMs: 1_000, allow: ['127.0.0.1'] }).checkUrl(
      new URL('http://warm-up.invalid/'),
    );
    applyCheapTransform(
      'json',
      {
        itemId: '',
        url: '',
        status: 200,
        headers: { 'content-type': 'application/json' },
        body: Buffer.from('{}'),
      },
      {},
    );
  } catch {
    // A warm-up that fails costs the first job the time it would have saved, nothing more.
  }
}
warmUpParsers();

const WARM_UP_BODY = '{"warm":true}';
const WARM_UP_RESPONSE =
  'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n' +
  `content-length: ${WARM_UP_BODY.length}\r\n\r\n${WARM_UP_BODY}`;
const WARM_UP_REQUESTS = 8;

/**
 * The warm-up's socket: a pipe in memory whose far end answers every request with WARM_UP_RESPONSE, so
 * the warm-up sends no byte to any network. undici calls these socket methods on TCP sockets; a pipe has
 * nothing to set.
 */
const inMemoryConnect: buildConnector.connector = (_options, callback) => {
  const [pipe, peer] = duplexPair();
  const noop = (): Duplex => pipe;
  Object.assign(pipe, { setNoDelay: noop, setKeepAlive: noop, setTimeout: noop, ref: noop, unref: noop });
  peer.on('data', () => peer.write(WARM_UP_RESPONSE));
  peer.on('error', () => undefined);
  // A pipe stands in for the TCP socket: undici uses only its stream side and the methods set above.
  const socket = pipe as unknown as Socket;
  queueMicrotask(() => callback(null, socket));
  return socket;
};

/**
 * Once per process, at import: a few requests through the whole request path (intake, host permits,
 * undici's agent, pool, client and HTTP parser, the attempt handler, the JSON transform, the outcome
 * queue) over an in-memory socket. Cold, that path costs the first job's first wave ~15 ms before its
 * first request leaves (and its first waves run slower): a latency-bound job pays that on its critical
 * path. Paid here, it lands in module scope, which Lambda runs in its init phase. It cannot hang an
 * import: a timer ends it, and a failure only leaves the path cold.
 */
async function warmUpRequestPath(): Promise<void> {
  const urls = Array.from({ length: WARM_UP_REQUESTS }, (_, index) => `http://warm-up.invalid/${index}`);
  const runtime: EngineRuntime = { signal: AbortSignal.timeout(1_000), [warmUpTransport]: inMemoryConnect };
  try {
    const run = startFanOut(
      parseItems(urls).items,
      parseOptions({ concurrency: 2, transform: { name: 'json' } }),
      runtime,
    );
    for await (const _outcome of run.outcomes) {
      // Outcomes are dropped: only the code paths they took matter.
    }
  } catch {
    // A warm-up that fails costs the first job the time it would have saved, nothing more.
  }
}

/** The library entry: validates `items` and `options` like a job, then yields outcomes as they finish. */
export function fanOut(
  items: readonly unknown[],
  options: unknown = {},
  runtime: EngineRuntime = {},
): AsyncIterableIterator<Outcome> {
  const parsedOptions = parseOptions(options);
  const parsed = parseItems(items);
  return startFanOut(parsed.items, parsedOptions, runtime).outcomes;
}

/** The engine over items already normalized by job.ts (runJob's entry). Work starts on the first `next()`. */
export function startFanOut(
  items: Iterable<Item> | AsyncIterable<Item>,
  options: JobOptions,
  runtime: EngineRuntime = {},
): FanOutRun {
  const clock: Clock = runtime.clock ?? systemClock;
  const { concurrency } = options;
  const maxAdmitted = concurrency;
  const random = Math.random;
  const log = runtime.log;
  const deadline = runtime.deadline;
  const keepExactJson = runtime.keepExactJson === true;

  const job = new AbortController();
  const jobSignal = job.signal;
  const hostOptions: HostSchedulerOptions = {
    perHost: options.perHost,
    perHostRate: options.perHostRate,
    adaptive: options.adaptive,
  };
  if (deadline !== undefined) hostOptions.deadline = deadline;
  if (runtime.hostShare !== undefined) hostOptions.share = runtime.hostShare;
  const hosts = createHostScheduler(hostOptions, clock);
  const maxParked = concurrency * PARKED_PER_SLOT;
  const guardOptions: DestinationGuardOptions = { connectTimeoutMs: options.timeouts.connectMs };
  if (runtime.allow !== undefined) guardOptions.allow = runtime.allow;
  if (runtime.allowedPorts !== undefined) guardOptions.allowedPorts = runtime.allowedPorts;
  if (runtime.lookup !== undefined) guardOptions.lookup = runtime.lookup;
  const guard = runtime.benchmarkWithoutGuard === true ? null : createDestinationGuard(guardOptions);
  /** The guard's verdict per origin: a job hits few origins many times (credentials never get this far). */
  const verdicts = new Map<string, ItemError | null>();
  let lastOrigin = '';
  let lastVerdict: ItemError | null = null;
  const checkOrigin = (origin: string): ItemError | null => {
    // Most jobs send to one origin again and again: the last verdict is a compare away, not a hash.
    if (origin === lastOrigin) return lastVerdict;
    let verdict = verdicts.get(origin);
    if (verdict === undefined) {
      verdict = guard === null ? null : guard.checkUrl(new URL(origin));
      if (verdicts.size >= MAX_CACHED_VERDICTS) verdicts.clear();
      verdicts.set(origin, verdict);
    }
    lastOrigin = origin;
    lastVerdict = verdict;
    return verdict;
  };

  // Created on start so that a run never iterated holds no sockets or timers.
  let agent: Agent | null = null;
  let http: ReturnType<typeof createHttpClient> | null = null;
  const loopDelay = monitorEventLoopDelay({ resolution: 20 });

  // Counters (progress is built from them only when asked for).
  let total = 0;
  let totalKnown = false;
  let succeeded = 0;
  let failed = 0;
  let pending = 0;
  let retries = 0;
  let throttled = 0;
  let itemsInFlight = 0;
  const failuresByCode: Partial<Record<ErrorCode, number>> = {};
  let startedAtMs = 0;
  let lastProgressMs = 0;

  // Intake and the outcome queue.
  let admitted = 0;
  let parked = 0;
  const queue: Outcome[] = [];
  let queueHead = 0;
  let consumerWake: (() => void) | null = null;
  let producerWake: (() => void) | null = null;
  /**
   * A synchronous source while the pump is in its intake loop: then whoever makes room (an outcome, a
   * parked item, the consumer) admits the next items itself, with no promise or wake-up per item.
   */
  let syncSource: Iterator<Item> | null = null;
  let admitting = false;
  let exhausted = false;
  let started = false;
  let finished = false;
  let fatal: unknown = null;
  let stopReason: StopReason | null = null;
  /** The consumer called return(): nobody reads the queue any more, so nothing may wait for room in it. */
  let consumerGone = false;
  let pump: Promise<void> | null = null;

  // The global bound on requests in flight.
  let slotsInUse = 0;
  const slotWaiters: Array<(granted: boolean) => void> = [];

  // Read through a call: TypeScript narrows the `let`s before an await and would not re-read them.
  const consumerLeft = (): boolean => consumerGone;
  const intakeDone = (): boolean => exhausted;
  const queued = (): number => queue.length - queueHead;
  const hasRoom = (): boolean =>
    admitted - parked < maxAdmitted && admitted < maxAdmitted + maxParked && queued() < maxAdmitted;

  const wakeConsumer = (): void => {
    const wake = consumerWake;
    consumerWake = null;
    wake?.();
  };
  const wakeProducer = (): void => {
    const wake = producerWake;
    producerWake = null;
    wake?.();
  };

  /** Starts one item; its outcome comes back through emit, always in a later microtask. */
  const admit = (item: Item): void => {
    total++;
    admitted++;
    itemsInFlight++;
    runItem(item).then(emit, (error: unknown) => {
      // A bug, not an item's failure: record it on the item rather than lose the outcome.
      emit({
        id: item.id,
        url: item.url,
        ok: false,
        error: { code: 'CONNECTION', message: `internal error: ${String(error)}` },
        attempts: 0,
        ms: 0,
      });
    });
  };

  /** Admits from a synchronous source while there is room; the pump is woken only when intake ends. */
  const admitSync = (source: Iterator<Item>): void => {
    if (admitting) return; // the outer call's loop sees the room too
    admitting = true;
    try {
      while (stopReason === null && hasRoom()) {
        if (deadline !== undefined && clock.now() >= deadline) {
          stop('deadline');
          return;
        }
        const next = source.next();
        if (next.done) {
          exhausted = true;
          wakeProducer();
          return;
        }
        admit(next.value);
      }
    } catch (error) {
      fatal = error;
      stop('consumer');
    } finally {
      admitting = false;
    }
  };

  const madeRoom = (): void => {
    if (syncSource !== null) admitSync(syncSource);
    else wakeProducer();
  };

  const snapshot = (): Progress => ({
    total: totalKnown ? total : null,
    succeeded,
    failed,
    pending,
    inFlight: itemsInFlight,
    retries,
    throttled,
    failuresByCode: { ...failuresByCode },
    loopDelayP99Ms: started && loopDelay.count > 0 ? Math.round(loopDelay.percentile(99) / 1e4) / 100 : 0,
    elapsedMs: started ? Math.round(performance.now() - startedAtMs) : 0,
  });

  const reportProgress = (force: boolean): void => {
    const onProgress = runtime.onProgress;
    if (onProgress === undefined) return;
    const now = performance.now();
    if (!force && now - lastProgressMs < PROGRESS_INTERVAL_MS) return;
    lastProgressMs = now;
    try {
      onProgress(snapshot());
    } catch (error) {
      log?.warn('progress listener threw', { error: String(error) });
    }
  };

  const stop = (reason: StopReason): void => {
    if (stopReason !== null) return;
    stopReason = reason;
    job.abort(new Error(`fan-out stopped: ${reason}`));
    http?.abortAll('ABORTED');
    wakeProducer();
    // Release everything still waiting for a request slot: their attempts fail at once as ABORTED.
    for (const wake of slotWaiters.splice(0)) wake(false);
  };

  const emit = (outcome: Outcome): void => {
    admitted--;
    itemsInFlight--;
    if (outcome.ok) succeeded++;
    else if (outcome.pending) pending++;
    else {
      failed++;
      const code = outcome.error.code;
      failuresByCode[code] = (failuresByCode[code] ?? 0) + 1;
    }
    queue.push(outcome);
    wakeConsumer();
    // Judged before the freed room admits anything: an item started now would only come back ABORTED.
    if (!outcome.ok && !outcome.pending && outcome.error.code !== 'ABORTED') {
      if (options.mode === 'fail-fast') stop('fail-fast');
      else {
        const done = succeeded + failed;
        const judged = done >= FAILURE_RATIO_MIN_FINISHED || (totalKnown && done >= total);
        if (judged && failed / done > options.maxFailureRatio) stop('failure-ratio');
      }
    }
    madeRoom();
    reportProgress(false);
  };

  /** How an item that did not finish is reported: pending on a deadline or signal, ABORTED otherwise. */
  const unfinished = (item: Item, attempts: number, ms: number): Outcome => {
    if (stopReason === 'fail-fast' || stopReason === 'failure-ratio') {
      const message =
        stopReason === 'fail-fast' ? 'aborted: fail-fast after a failure' : 'aborted: failure ratio exceeded';
      return { id: item.id, url: item.url, ok: false, error: { code: 'ABORTED', message }, attempts, ms };
    }
    const outcome: PendingOutcome = {
      id: item.id,
      url: item.url,
      ok: false,
      pending: true,
      item,
      attempts,
      ms,
    };
    return outcome;
  };

  /** The item waits without holding its intake slot: intake may admit another (see PARKED_PER_SLOT). */
  const park = (): void => {
    parked++;
    madeRoom();
  };

  /** Waits for a request slot; resolves false when the job stopped first (no slot was taken). */
  const waitForSlot = (): Promise<boolean> => new Promise<boolean>((resolve) => slotWaiters.push(resolve));
  const releaseSlot = (): void => {
    // Hand the slot straight to the next waiter, so no one can slip in between and exceed the bound.
    const next = slotWaiters.shift();
    if (next !== undefined) next(true);
    else slotsInUse--;
  };

  const runItem = async (item: Item): Promise<Outcome> => {
    const client = http as NonNullable<typeof http>;
    // `ms` runs from the first send: time parked for a host permit or a slot before it is not the item's.
    let firstSentAt = -1;
    const elapsed = (): number => (firstSentAt < 0 ? 0 : clock.now() - firstSentAt);
    let url = item.url;
    let method = item.method;
    let headers = item.headers;
    let body = item.body;
    let attempts = 0;
    let hops = 0;
    let newAttempt = true;
    const failure = (error: ItemError): Outcome => ({
      id: item.id,
      url: item.url,
      ok: false,
      error,
      attempts,
      ms: elapsed(),
    });

    for (;;) {
      if (stopReason !== null) return unfinished(item, attempts, elapsed());
      if (deadline !== undefined && clock.now() >= deadline) {
        stop('deadline');
        return unfinished(item, attempts, elapsed());
      }
      // URLs here are normalized (job.ts, resolveRedirect): origin and path are slices, not a parse.
      const slash = originEnd(url);
      const origin = url.slice(0, slash);
      // The policy judges every hop before any connection (the connector judges addresses again).
      const blocked = checkOrigin(origin);
      if (blocked !== null) {
        if (newAttempt) attempts++;
        return failure(blocked);
      }
      // Counted once the permit and the slot are held: an item stopped while waiting for them was not sent.
      const countsAsAttempt = newAttempt;
      newAttempt = true;
      let permit: HostPermit | null = hosts.tryAcquire(origin);
      if (permit === null) {
        park();
        try {
          permit = await hosts.acquire(origin, jobSignal);
        } catch {
          // Stopped, or the origin cools down past the deadline: pending (or ABORTED on a fail-fast).
          return unfinished(item, attempts, elapsed());
        } finally {
          parked--;
        }
      }
      if (slotsInUse < concurrency && slotWaiters.length === 0) slotsInUse++;
      else if (!(await waitForSlot())) {
        permit.release({ ok: false, throttled: false, latencyMs: 0 });
        return unfinished(item, attempts, elapsed());
      }
      // The waits above can outlast the deadline (an injected clock moves without firing our timer).
      if (stopReason !== null || (deadline !== undefined && clock.now() >= deadline)) {
        if (stopReason === null) stop('deadline');
        releaseSlot();
        permit.release({ ok: false, throttled: false, latencyMs: 0 });
        return unfinished(item, attempts, elapsed());
      }
      if (countsAsAttempt) {
        attempts++;
        if (attempts > 1) retries++;
      }
      if (log !== undefined) {
        log.debug(`fetch ${item.id} ${origin.slice(origin.indexOf('//') + 2)}`, { attempt: attempts, url });
      }
      permit.sending();
      if (firstSentAt < 0) firstSentAt = clock.now();
      const sentAt = performance.now();
      const result = await client.fetchOnce({ origin, path: url.slice(slash) || '/', method, headers, body });
      releaseSlot();
      const latencyMs = performance.now() - sentAt;
      const status = result.ok ? result.response.status : undefined;
      const retryAfter = result.ok ? headerValue(result.response.headers['retry-after']) : undefined;
      const wasThrottled = status === 429 || status === 503;
      if (wasThrottled) throttled++;
      const report: AttemptReport = {
        ok: status !== undefined && status < 400,
        throttled: wasThrottled,
        latencyMs,
      };
      if (status !== undefined) report.status = status;
      if (retryAfter !== undefined) {
        const retryAfterMs = parseRetryAfter(retryAfter, clock.now());
        if (retryAfterMs !== null) report.retryAfterMs = retryAfterMs;
      }
      permit.release(report);

      if (result.ok && status !== undefined) {
        const response = result.response;
        if (status >= 200 && status < 300) {
          return finishSucceeded(item, response, url, attempts, firstSentAt);
        }
        const location = headerValue(response.headers.location);
        if (REDIRECT_STATUSES.has(status) && location !== undefined) {
          hops++;
          if (hops > options.maxRedirects) {
            return failure({
              code: 'TOO_MANY_REDIRECTS',
              message: `more than ${options.maxRedirects} redirects`,
            });
          }
          const next = resolveRedirect(location, new URL(url));
          if (!next.ok) return failure(next.error);
          if (next.url.slice(0, originEnd(next.url)) !== origin) {
            headers = withoutHeaders(headers, CROSS_ORIGIN_DROPPED_HEADERS);
          }
          // RFC 9110 §15.4: 303 turns into GET; so do 301/302 after a POST (what every client does).
          if (
            (status === 303 && method !== 'HEAD') ||
            ((status === 301 || status === 302) && method === 'POST')
          ) {
            method = 'GET';
            body = undefined;
            headers = withoutHeaders(headers, ['content-type']);
          }
          url = next.url;
          newAttempt = false;
          continue;
        }
      }

      const error: ItemError = result.ok
        ? { code: 'HTTP_STATUS', message: `HTTP ${status}`, ...(status !== undefined ? { status } : {}) }
        : result.error;
      if (stopReason !== null) return unfinished(item, attempts, elapsed());
      const decision = decideRetry(options.retries, {
        attempts,
        method,
        ...(item.retryUnsafe ? { retryUnsafe: true } : {}),
        failure: {
          code: error.code,
          ...(error.status !== undefined ? { status: error.status } : {}),
          retryAfter: retryAfter ?? null,
          ...(!result.ok && result.temporary ? { temporary: true } : {}),
        },
        now: clock.now(),
        ...(deadline !== undefined ? { deadline } : {}),
        random,
      });
      if (decision.action === 'stop') return failure(error);
      if (decision.action === 'pending') {
        return {
          id: item.id,
          url: item.url,
          ok: false,
          pending: true,
          item,
          attempts,
          ms: elapsed(),
        };
      }
      park();
      try {
        await clock.sleep(decision.delayMs, jobSignal);
      } catch {
        return unfinished(item, attempts, elapsed());
      } finally {
        parked--;
      }
    }
  };

  const finishSucceeded = (
    item: Item,
    response: HttpResponse,
    finalUrl: string,
    attempts: number,
    firstSentAt: number,
  ): Outcome | Promise<Outcome> => {
    // Without a pool the transform is synchronous: no promise on the hot path.
    if (runtime.transformRunner === undefined) {
      const result = inlineTransform(item, response, finalUrl, options.transform);
      return toOutcome(item, response, result, attempts, firstSentAt);
    }
    return transform(item, response, finalUrl, options.transform, runtime.transformRunner, jobSignal).then(
      (result) => toOutcome(item, response, result, attempts, firstSentAt),
    );
  };

  const toOutcome = (
    item: Item,
    response: HttpResponse,
    transformed: TransformResult,
    attempts: number,
    firstSentAt: number,
  ): Outcome => {
    const ms = clock.now() - firstSentAt;
    if (!transformed.ok) {
      if (stopReason !== null && jobSignal.aborted && transformed.code !== 'TRANSFORM_ERROR') {
        return unfinished(item, attempts, ms);
      }
      return {
        id: item.id,
        url: item.url,
        ok: false,
        error: { code: transformed.code, message: transformed.message },
        attempts,
        ms,
      };
    }
    const outcome: Outcome = {
      id: item.id,
      url: item.url,
      ok: true,
      status: response.status,
      value: transformed.value,
      attempts,
      ms,
    };
    if (keepExactJson && transformed.json !== undefined)
      (outcome as WithExactJson)[EXACT_JSON] = transformed.json;
    return outcome;
  };

  const onSignalAbort = (): void => stop('signal');
  let deadlineTimer: NodeJS.Timeout | null = null;

  const run = async (): Promise<void> => {
    startedAtMs = performance.now();
    loopDelay.enable();
    agent = new Agent({
      connect:
        runtime[warmUpTransport] ??
        (guard === null ? connectorFactory({ timeout: options.timeouts.connectMs }) : guard.connect),
      connections: options.perHost,
      // No pipelining. undici then writes to a reused keep-alive socket only in the check phase after the
      // poll that read its last response (advisory GHSA-35p6-xmwp-9g52): kept on purpose. Skipping that
      // wait (a local patch of undici, not kept) gained ~40 ms of ~5,400 in S2 (A/B, 3 pairs).
      pipelining: 1,
      // The HTTP client's sweep owns the headers and body deadlines (http.ts).
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    http = createHttpClient({
      dispatcher: agent,
      headersTimeoutMs: options.timeouts.headersMs,
      bodyTimeoutMs: options.timeouts.bodyMs,
      totalTimeoutMs: options.timeouts.totalMs,
      maxBodyBytes: options.maxBodyBytes,
    });
    // A first report at once: a listener learns the run has started before any item finishes.
    reportProgress(true);
    const signal = runtime.signal;
    if (signal?.aborted) stop('signal');
    else signal?.addEventListener('abort', onSignalAbort, { once: true });
    if (deadline !== undefined) {
      const at = deadline;
      const armDeadline = (): void => {
        const left = Math.max(0, at - clock.now());
        // Node runs a delay over 2^31-1 ms (24.8 days) at once, so a far deadline is waited for in steps.
        const step = Math.min(left, MAX_TIMER_DELAY_MS);
        deadlineTimer = setTimeout(step < left ? armDeadline : () => stop('deadline'), step);
        deadlineTimer.unref();
      };
      armDeadline();
    }

    const isAsync = !(Symbol.iterator in items);
    const iterator: Iterator<Item> | AsyncIterator<Item> = isAsync
      ? (items as AsyncIterable<Item>)[Symbol.asyncIterator]()
      : (items as Iterable<Item>)[Symbol.iterator]();
    const waitForRoom = (): Promise<void> =>
      new Promise<void>((resolve) => {
        producerWake = resolve;
      });
    try {
      if (!isAsync) {
        const source = iterator as Iterator<Item>;
        syncSource = source;
        admitSync(source);
        // Room is filled by admitSync from now on: the pump wakes when intake stops or the source ends.
        while (stopReason === null && !intakeDone()) await waitForRoom();
        syncSource = null;
        if (fatal !== null) throw fatal;
      } else {
        const source = iterator as AsyncIterator<Item>;
        while (stopReason === null) {
          if (!hasRoom()) {
            await waitForRoom();
            continue;
          }
          if (deadline !== undefined && clock.now() >= deadline) {
            stop('deadline');
            break;
          }
          const next = await source.next();
          if (next.done) {
            exhausted = true;
            break;
          }
          admit(next.value);
        }
      }
      while (admitted > 0) await waitForRoom();
      if (!intakeDone() && !consumerLeft()) {
        // Every item left in the source still gets its outcome (ABORTED or pending), never dropped,
        // unless the consumer has left: then no one would read them (a Ctrl-C that breaks its loop).
        for (;;) {
          if (consumerLeft()) break;
          if (queued() >= maxAdmitted) {
            await waitForRoom();
            continue;
          }
          const next = isAsync ? await iterator.next() : (iterator as Iterator<Item>).next();
          if (next.done) {
            exhausted = true;
            break;
          }
          total++;
          admitted++;
          itemsInFlight++;
          emit(unfinished(next.value, 0, 0));
        }
      }
      if (exhausted) totalKnown = true;
    } catch (error) {
      fatal = error;
      stop('consumer');
    } finally {
      if (!exhausted) await closeIterator(iterator);
      signal?.removeEventListener('abort', onSignalAbort);
      if (deadlineTimer !== null) clearTimeout(deadlineTimer);
      http.close();
      hosts.close();
      // Nothing is in flight any more (every admitted item has its outcome): destroying the idle
      // keep-alive sockets ends the same way as close(), in ~1 ms instead of 2-5 ms per job.
      const closing = agent.destroy(RUN_ENDED);
      await closing.catch(() => undefined);
      // Sockets finish closing in the loop's close phase: let it pass so nothing outlives the run. Two
      // check phases (an immediate queued from an immediate runs in the next turn) enclose one close
      // phase; a 0 ms timer would cost a whole millisecond.
      await new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));
      reportProgress(true);
      loopDelay.disable();
      finished = true;
      wakeConsumer();
    }
  };

  const outcomes: AsyncIterableIterator<Outcome> = {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next(): Promise<IteratorResult<Outcome>> {
      if (!started) {
        started = true;
        pump = run();
      }
      for (;;) {
        if (queueHead < queue.length) {
          const value = queue[queueHead] as Outcome;
          queue[queueHead] = undefined as unknown as Outcome; // drop the reference: the consumer owns it now
          queueHead++;
          if (queueHead > 1024 && queueHead * 2 > queue.length) {
            queue.splice(0, queueHead);
            queueHead = 0;
          }
          madeRoom();
          return { value, done: false };
        }
        if (finished) {
          if (fatal !== null) {
            const error = fatal;
            fatal = null;
            throw error;
          }
          return { value: undefined, done: true };
        }
        await new Promise<void>((resolve) => {
          consumerWake = resolve;
        });
      }
    },
    async return(): Promise<IteratorResult<Outcome>> {
      if (!started) {
        started = true;
        finished = true;
        return { value: undefined, done: true };
      }
      consumerGone = true;
      stop('consumer');
      // The run may already be stopped (a signal) and draining into a full queue: let it see we left.
      wakeProducer();
      await pump;
      queue.length = 0;
      queueHead = 0;
      return { value: undefined, done: true };
    },
  };

  return { outcomes, progress: snapshot, hostStats: () => hosts.stats() };
}

/**
 * Where the origin of a normalized http(s) URL ends: the first `/` after `//` (WHATWG serializes every
 * http(s) URL with a path, and a host never holds a `/`).
 */
function originEnd(url: string): number {
  const slash = url.indexOf('/', url.indexOf('//') + 2);
  return slash < 0 ? url.length : slash;
}

async function closeIterator(iterator: Iterator<Item> | AsyncIterator<Item>): Promise<void> {
  try {
    await iterator.return?.();
  } catch {
    // A source that fails to close has nothing more to give us.
  }
}

function withoutHeaders(headers: Record<string, string>, names: readonly string[]): Record<string, string> {
  if (!names.some((name) => name in headers)) return headers;
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (!names.includes(name)) out[name] = value;
  return out;
}

type RedirectTarget = { ok: true; url: string } | { ok: false; error: ItemError };

/** A Location resolved against the current URL; a non-http(s) scheme is a destination the policy forbids. */
function resolveRedirect(location: string, base: URL): RedirectTarget {
  let resolved: URL;
  try {
    resolved = new URL(location, base);
  } catch {
    return {
      ok: false,
      error: { code: 'INVALID_URL', message: `redirect to an invalid URL: ${location.slice(0, 200)}` },
    };
  }
  if (resolved.protocol !== 'http:' && resolved.protocol !== 'https:') {
    return {
      ok: false,
      error: {
        code: 'BLOCKED_DESTINATION',
        message: `redirect to scheme "${resolved.protocol.slice(0, -1)}" refused`,
      },
    };
  }
  const checked = normalizeUrl(resolved.href);
  if (!checked.ok)
    return { ok: false, error: { code: 'INVALID_URL', message: `redirect: ${checked.message}` } };
  return { ok: true, url: checked.url };
}

function transform(
  item: Item,
  response: HttpResponse,
  finalUrl: string,
  spec: TransformSpec,
  runner: TransformRunner,
  signal: AbortSignal,
): Promise<TransformResult> {
  const fetched: FetchedResponse = {
    itemId: item.id,
    url: finalUrl,
    status: response.status,
    headers: flattenHeaders(response.headers),
    body: toTransferable(response.chunks, response.bytes),
  };
  return runner(fetched, spec, signal);
}

/**
 * Without a transform pool: the pool's own inline path for the cheap built-ins (auto, json, raw, digest),
 * so a job gives the same values with or without a pool; the others need a pool.
 */
function inlineTransform(
  item: Item,
  response: HttpResponse,
  finalUrl: string,
  spec: TransformSpec,
): TransformResult {
  const chunks = response.chunks;
  const fetched: FetchedResponse = {
    itemId: item.id,
    url: finalUrl,
    status: response.status,
    headers: flattenHeaders(response.headers),
    // A view is enough on this thread: no copy (the pool path copies to transfer).
    body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, response.bytes),
  };
  return (
    applyCheapTransform(spec.name, fetched, spec.options) ?? {
      ok: false,
      code: 'TRANSFORM_ERROR',
      message: `transform "${spec.name}" needs the transform pool`,
    }
  );
}

/** A fresh, exactly sized buffer the pool can move to a worker (socket chunks share larger buffers). */
function toTransferable(chunks: Buffer[], bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function flattenHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in headers) {
    const value = headerValue(headers[name]);
    if (value !== undefined) out[name] = value;
  }
  return out;
}

await warmUpRequestPath();
