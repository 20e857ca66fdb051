// The demo's upstream: a small product API on 127.0.0.1 with ~200 ms per call, a few flaky items and one broken.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** About what a real third-party API answers in; what makes fanning out worth it. */
export const DEMO_LATENCY_MS = 200;

/**
 * How the flaky items fail their first attempt, then answer normally: the faults a fan-out meets every
 * night. Every one of them is retried by the engine, so each item still succeeds. None is a throttling
 * answer (429, 503): those would rightly make the adaptive limit back off, which is another demo.
 */
export const FLAKY_ITEMS: ReadonlyMap<number, 'bad-gateway' | 'gateway-timeout' | 'reset'> = new Map([
  [12, 'bad-gateway'],
  [31, 'reset'],
  [58, 'gateway-timeout'],
  [77, 'bad-gateway'],
  [104, 'reset'],
  [129, 'gateway-timeout'],
  [151, 'reset'],
  [176, 'bad-gateway'],
]);
/** Answers 500 every time: after its attempts run out it lands in errors/ with HTTP_STATUS. */
export const BROKEN_ITEM = 137;

export interface DemoUpstream {
  /** http://127.0.0.1:PORT */
  origin: string;
  /** `count` product URLs: /products/1 .. /products/count */
  productUrls(count: number): string[];
  /** Requests answered since the last reset. */
  readonly requests: number;
  /** Forgets which flaky items already failed, so the next run meets the same faults. */
  reset(): void;
  close(): Promise<void>;
}

const NAMES = ['kettle', 'lamp', 'chair', 'desk', 'mug', 'clock', 'shelf', 'rug', 'vase', 'fan'];

export async function startDemoUpstream(options: { latencyMs?: number } = {}): Promise<DemoUpstream> {
  const latencyMs = options.latencyMs ?? DEMO_LATENCY_MS;
  const failedOnce = new Set<number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let requests = 0;

  const server = http.createServer((req, res) => {
    requests++;
    const match = /^\/products\/(\d+)$/.exec(new URL(req.url ?? '/', 'http://demo.invalid').pathname);
    const id = match ? Number(match[1]) : Number.NaN;
    // A fixed jitter per item (±20 ms) so latency percentiles look like a real service, yet repeat exactly.
    const delayMs = Number.isNaN(id) ? 0 : latencyMs + ((id * 37) % 41) - 20;
    const timer = setTimeout(() => {
      timers.delete(timer);
      answer(id, res, req.socket);
    }, delayMs);
    timers.add(timer);
    res.once('close', () => {
      clearTimeout(timer);
      timers.delete(timer);
    });
  });

  const answer = (id: number, res: http.ServerResponse, socket: Socket): void => {
    if (Number.isNaN(id)) {
      send(res, 404, { error: 'not found' });
      return;
    }
    if (id === BROKEN_ITEM) {
      send(res, 500, { error: 'inventory service is down for this product' });
      return;
    }
    const fault = FLAKY_ITEMS.get(id);
    if (fault && !failedOnce.has(id)) {
      failedOnce.add(id);
      if (fault === 'reset') {
        socket.destroy();
        return;
      }
      send(res, fault === 'bad-gateway' ? 502 : 504, { error: 'try again' });
      return;
    }
    send(res, 200, {
      id,
      name: `${NAMES[id % NAMES.length]} #${id}`,
      priceCents: 999 + ((id * 7919) % 9000),
      inStock: id % 5 !== 0,
    });
  };

  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    origin,
    productUrls: (count) => Array.from({ length: count }, (_, index) => `${origin}/products/${index + 1}`),
    get requests() {
      return requests;
    },
    reset() {
      failedOnce.clear();
      requests = 0;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function send(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: http.OutgoingHttpHeaders = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}
