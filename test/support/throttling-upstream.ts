// A throttling HTTP upstream for politeness tests and bench:polite: per origin, 429 + Retry-After above K in flight or R per second.
//
// node:http on 127.0.0.1 port 0; `origins: N` opens N listeners (N origins, distinct ports), each with its
// own policy and counters. An origin refuses a request (status 429 or 503, Retry-After when set) when it
// already serves `maxInFlight` requests, when `maxPerSecond` requests were accepted in the last second,
// or when a test forced it with throttleNext(). Accepted requests answer 200 JSON after `latencyMs`.
// Refusals answer at once and never count as in flight. Every arrival is timestamped with `now()`
// (default performance.now; a test passes its clock's now to read arrivals on the engine's timeline).
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface OriginPolicy {
  /** Refuse when this many requests are already being served; null = no bound. */
  maxInFlight: number | null;
  /** Refuse when this many requests were accepted in the last 1,000 ms; null = no bound. */
  maxPerSecond: number | null;
  /** Time before an accepted request is answered. */
  latencyMs: number;
  /** Retry-After header value on a refusal (seconds or an HTTP date); null = none. */
  retryAfter: string | null;
  /** The refusal status. */
  status: 429 | 503;
}

export interface Arrival {
  /** now() at arrival. */
  at: number;
  throttled: boolean;
}

export interface OriginCounters {
  requests: number;
  throttled: number;
  inFlight: number;
  maxInFlight: number;
  /** Every arrival since the last reset, in order. */
  arrivals: Arrival[];
}

export interface ThrottlingUpstream {
  /** `http://127.0.0.1:PORT` per origin. */
  originList: string[];
  counters(origin: string): OriginCounters;
  /** Changes an origin's policy from now on. */
  configure(origin: string, policy: Partial<OriginPolicy>): void;
  /** Refuses the next `count` arrivals at `origin` whatever the bounds (with `retryAfter` if given). */
  throttleNext(origin: string, count: number, retryAfter?: string | null): void;
  /** Clears counters and forced refusals (policies stay). */
  reset(): void;
  close(): Promise<void>;
}

export interface ThrottlingUpstreamOptions extends Partial<OriginPolicy> {
  origins?: number;
  now?: () => number;
}

const DEFAULT_POLICY: OriginPolicy = {
  maxInFlight: null,
  maxPerSecond: null,
  latencyMs: 0,
  retryAfter: '1',
  status: 429,
};

interface OriginState {
  policy: OriginPolicy;
  counters: OriginCounters;
  /** Times of accepted arrivals within the last second (for maxPerSecond). */
  accepted: number[];
  forced: number;
  forcedRetryAfter: string | null | undefined;
}

export async function startThrottlingUpstream(
  options: ThrottlingUpstreamOptions = {},
): Promise<ThrottlingUpstream> {
  const { origins: count = 1, now = () => performance.now(), ...policy } = options;
  const servers: http.Server[] = [];
  const sockets = new Set<Socket>();
  const byOrigin = new Map<string, OriginState>();
  const fresh = (): OriginCounters => ({
    requests: 0,
    throttled: 0,
    inFlight: 0,
    maxInFlight: 0,
    arrivals: [],
  });

  const handle = (state: OriginState, request: http.IncomingMessage, response: http.ServerResponse): void => {
    const at = now();
    const { counters, policy: rules } = state;
    counters.requests++;
    // A rolling window in the same timeline as the bound: performance.now, whatever `now` is.
    const wall = performance.now();
    while (state.accepted.length > 0 && (state.accepted[0] ?? 0) <= wall - 1000) state.accepted.shift();
    let retryAfter = rules.retryAfter;
    let refuse = false;
    if (state.forced > 0) {
      state.forced--;
      refuse = true;
      if (state.forcedRetryAfter !== undefined) retryAfter = state.forcedRetryAfter;
    } else if (rules.maxInFlight !== null && counters.inFlight >= rules.maxInFlight) refuse = true;
    else if (rules.maxPerSecond !== null && state.accepted.length >= rules.maxPerSecond) refuse = true;
    counters.arrivals.push({ at, throttled: refuse });
    request.resume();
    if (refuse) {
      counters.throttled++;
      const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json' };
      if (retryAfter !== null) headers['retry-after'] = retryAfter;
      response.writeHead(rules.status, headers);
      response.end('{"throttled":true}');
      return;
    }
    state.accepted.push(wall);
    counters.inFlight++;
    counters.maxInFlight = Math.max(counters.maxInFlight, counters.inFlight);
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      counters.inFlight--;
    };
    const timer = setTimeout(() => {
      finish();
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(`{"ok":true,"path":${JSON.stringify(request.url ?? '/')}}`);
    }, rules.latencyMs);
    response.once('close', () => {
      clearTimeout(timer);
      finish();
    });
  };

  for (let index = 0; index < count; index++) {
    const state: OriginState = {
      policy: { ...DEFAULT_POLICY, ...policy },
      counters: fresh(),
      accepted: [],
      forced: 0,
      forcedRetryAfter: undefined,
    };
    const server = http.createServer({ keepAliveTimeout: 60_000 }, (request, response) =>
      handle(state, request, response),
    );
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    servers.push(server);
    byOrigin.set(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, state);
  }

  const stateOf = (origin: string): OriginState => {
    const state = byOrigin.get(origin.replace(/\/$/, ''));
    if (state === undefined) throw new Error(`not an origin of this upstream: ${origin}`);
    return state;
  };

  return {
    originList: [...byOrigin.keys()],
    counters: (origin) => stateOf(origin).counters,
    configure(origin, change) {
      const state = stateOf(origin);
      state.policy = { ...state.policy, ...change };
    },
    throttleNext(origin, refusals, retryAfter) {
      const state = stateOf(origin);
      state.forced = refusals;
      state.forcedRetryAfter = retryAfter;
    },
    reset() {
      for (const state of byOrigin.values()) {
        state.counters = fresh();
        state.accepted = [];
        state.forced = 0;
        state.forcedRetryAfter = undefined;
      }
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await Promise.all(
        servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
      );
    },
  };
}
