// A fault-injecting HTTP upstream for tests: node:http on 127.0.0.1 port 0, with counters of hits and in-flight requests.
//
// Every route is driven by query parameters, so a test composes a fault on any path:
//
//   any path        ?latency=ms          wait before sending headers
//                   ?status=N            answer with status N (default 200)
//                   ?failFirst=N         the first N hits of this key fail, later ones succeed; the key is
//                                        `?key=` when given, else the path. How they fail: ?failStatus=503
//                                        (default), or ?failStatus=reset | hang
//                   ?retryAfter=V        a Retry-After header: seconds ("2") or verbatim HTTP date
//                   ?retryAfterIn=S      a Retry-After HTTP date S seconds after the server's clock
//                   ?reset=1             destroy the socket before any header (client sees a reset)
//                   ?hang=1              never answer (until the client gives up: counted in `aborted`)
//                   ?truncate=N          declare the full length, send N bytes, then destroy the socket
//                   ?drip=N&dripMs=ms    send headers, then N chunks of ?chunkBytes=16, dripMs apart
//                   ?bodyDelay=ms        send headers at once, the body after ms
//                   ?size=N              a body of N bytes ('a'...), streamed with backpressure;
//                                        ?chunked=1 omits content-length; ?declare=N lies about it
//                   ?encoding=gzip|deflate|br   compress the body (content-encoding set);
//                                        ?encoding=bad sends garbage labelled gzip
//                   ?bomb=N              a gzip (or ?encoding=br) stream of N zero bytes, compressed lazily
//                   ?redirect=N          a chain: 302 (?redirectStatus=301|303|307|308) to the same URL with
//                                        redirect=N-1, as a relative Location (?absolute=1 for absolute)
//                   ?loop=1              redirect to itself forever
//                   ?location=V          redirect (?redirectStatus) to V verbatim (other schemes, hosts)
//                   ?type=json|html|text content-type of the default body
//   /item/:i        {"id":i,"pad":"xxx..."} (~1 KB, ?bytes=N to size it), JSON
//   /echo           {"method","url","headers","body"} of the request, JSON
//   /html           a small HTML page (utf-8)
//   /latin1         text/plain; charset=iso-8859-1 with bytes that are not valid UTF-8
//   /broken-json    application/json that does not parse
//   anything else   {"ok":true,"path":...} JSON (or ?type=html|text)
//
// Counters: hits(path?) counts requests (all, or by exact path); inFlight.current / .max (global) and
// .maxPerOrigin (highest in-flight count for any one Host header); `aborted` counts responses the
// client abandoned before they were complete (what a fail-fast or deadline test asserts); requests()
// keeps the last 10,000 requests seen. `origins: K` opens K listeners (K origins: distinct ports)
// sharing the handler and counters, for per-origin tests.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';

export interface UpstreamOptions {
  /** Listeners to open, each a distinct origin (port); defaults to 1. */
  origins?: number;
  /** Server keep-alive idle timeout; defaults to 60 s like the bench upstream. */
  keepAliveTimeoutMs?: number;
}

export interface RecordedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  host: string;
  headers: http.IncomingHttpHeaders;
}

export interface InFlightGauge {
  current: number;
  max: number;
  /** The highest in-flight count any one Host header reached. */
  maxPerOrigin: number;
  /** The current count per Host header. */
  byOrigin: Map<string, number>;
}

export interface Upstream {
  /** Origin URL of the first listener with a trailing slash: `http://127.0.0.1:PORT/`. */
  url: string;
  /** `http://127.0.0.1:PORT` of the first listener. */
  origin: string;
  port: number;
  /** Every listener's origin (length = options.origins). */
  originList: string[];
  /** Requests seen since the last reset: all, or those whose path (without query) is `path`. */
  hits(path?: string): number;
  inFlight: InFlightGauge;
  /** Responses the client abandoned before they were complete. */
  readonly aborted: number;
  requests(): readonly RecordedRequest[];
  /** Zeroes the counters and the fail-first state. */
  reset(): void;
  close(): Promise<void>;
}

const MAX_RECORDED = 10_000;
const ITEM_PAD_BYTES = 1024 - 21;
const HTML_PAGE =
  '<!doctype html><html><head><meta charset="utf-8"><title>Fixture page</title></head>' +
  '<body><h1>Héllo</h1><p>A paragraph with <a href="/next">a link</a>.</p></body></html>';
// "café crème" in ISO-8859-1: 0xE9 and 0xE8 are not valid UTF-8 on their own.
const LATIN1_BODY = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x63, 0x72, 0xe8, 0x6d, 0x65, 0x0a]);
const FILL_CHUNK = Buffer.alloc(64 * 1024, 'a');
const ZERO_CHUNK = Buffer.alloc(64 * 1024, 0);

export async function startUpstream(options: UpstreamOptions = {}): Promise<Upstream> {
  const originCount = options.origins ?? 1;
  const gauge: InFlightGauge = { current: 0, max: 0, maxPerOrigin: 0, byOrigin: new Map() };
  const hitsByPath = new Map<string, number>();
  const failCounts = new Map<string, number>();
  let totalHits = 0;
  let aborted = 0;
  let recorded: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const later = (ms: number, fn: () => void): NodeJS.Timeout => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
    return timer;
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const host = req.headers.host ?? '';
    const url = new URL(req.url ?? '/', 'http://upstream.invalid');
    totalHits++;
    hitsByPath.set(url.pathname, (hitsByPath.get(url.pathname) ?? 0) + 1);
    if (recorded.length >= MAX_RECORDED) recorded = recorded.slice(MAX_RECORDED / 2);
    recorded.push({ method: req.method ?? 'GET', url: req.url ?? '/', host, headers: req.headers });

    gauge.current++;
    gauge.max = Math.max(gauge.max, gauge.current);
    const perOrigin = (gauge.byOrigin.get(host) ?? 0) + 1;
    gauge.byOrigin.set(host, perOrigin);
    gauge.maxPerOrigin = Math.max(gauge.maxPerOrigin, perOrigin);
    // Faults we inject ourselves (reset, truncate) are not the client's abort.
    let selfDestroyed = false;
    const pending: NodeJS.Timeout[] = [];
    res.once('close', () => {
      gauge.current--;
      gauge.byOrigin.set(host, (gauge.byOrigin.get(host) ?? 1) - 1);
      for (const timer of pending) {
        clearTimeout(timer);
        timers.delete(timer);
      }
      if (!res.writableFinished && !selfDestroyed) aborted++;
    });
    const wait = (ms: number, fn: () => void): void => {
      pending.push(later(ms, fn));
    };
    const destroy = (): void => {
      selfDestroyed = true;
      req.socket.destroy();
    };

    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('end', () => {
      const requestBody = Buffer.concat(chunks).toString('utf8');
      const q = url.searchParams;
      const start = (): void => respond(req, res, url, requestBody, { wait, destroy });
      if (q.has('failFirst')) {
        const key = q.get('key') ?? url.pathname;
        const seen = (failCounts.get(key) ?? 0) + 1;
        failCounts.set(key, seen);
        if (seen <= Number(q.get('failFirst'))) {
          const how = q.get('failStatus') ?? '503';
          const fail = (): void => {
            if (how === 'reset') destroy();
            else if (how === 'hang') return;
            else sendText(res, Number(how), 'failing on purpose', retryAfterHeaders(q));
          };
          const latency = Number(q.get('latency') ?? 0);
          if (latency > 0) wait(latency, fail);
          else fail();
          return;
        }
      }
      const latency = Number(q.get('latency') ?? 0);
      if (latency > 0) wait(latency, start);
      else start();
    });
  };

  const servers: http.Server[] = [];
  for (let index = 0; index < originCount; index++) {
    const server = http.createServer({ keepAliveTimeout: options.keepAliveTimeoutMs ?? 60_000 }, handler);
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    servers.push(server);
  }
  const originList = servers.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const origin = originList[0] ?? '';
  const port = Number(new URL(origin).port);

  return {
    url: `${origin}/`,
    origin,
    port,
    originList,
    hits: (path) => (path === undefined ? totalHits : (hitsByPath.get(path) ?? 0)),
    inFlight: gauge,
    get aborted() {
      return aborted;
    },
    requests: () => recorded,
    reset() {
      totalHits = 0;
      aborted = 0;
      hitsByPath.clear();
      failCounts.clear();
      recorded = [];
      gauge.max = gauge.current;
      gauge.maxPerOrigin = Math.max(0, ...gauge.byOrigin.values());
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of sockets) socket.destroy();
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.closeAllConnections();
              server.close(() => resolve());
            }),
        ),
      );
      // Handles finish closing in the loop's close phase: let it pass so a leak check sees them gone.
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
    },
  };
}

interface Faults {
  wait(ms: number, fn: () => void): void;
  destroy(): void;
}

function respond(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  requestBody: string,
  faults: Faults,
): void {
  const q = url.searchParams;
  if (q.get('reset') === '1') {
    faults.destroy();
    return;
  }
  if (q.get('hang') === '1') return;

  const redirectStatus = Number(q.get('redirectStatus') ?? 302);
  if (q.has('location')) {
    res.writeHead(redirectStatus, { location: q.get('location') ?? '', 'content-length': 0 });
    res.end();
    return;
  }
  if (q.get('loop') === '1') {
    res.writeHead(redirectStatus, { location: `${url.pathname}${url.search}`, 'content-length': 0 });
    res.end();
    return;
  }
  const hops = Number(q.get('redirect') ?? 0);
  if (hops > 0) {
    const next = new URLSearchParams(q);
    next.set('redirect', String(hops - 1));
    const relative = `${url.pathname}?${next.toString()}`;
    const location = q.get('absolute') === '1' ? `http://${req.headers.host}${relative}` : relative;
    res.writeHead(redirectStatus, { location, 'content-length': 0 });
    res.end();
    return;
  }

  const status = Number(q.get('status') ?? 200);
  const headers: http.OutgoingHttpHeaders = retryAfterHeaders(q);
  const encoding = q.get('encoding');

  if (q.has('bomb')) {
    sendBomb(res, status, Number(q.get('bomb')), encoding === 'br' ? 'br' : 'gzip');
    return;
  }
  if (q.has('size')) {
    sendSized(res, status, Number(q.get('size')), q, headers);
    return;
  }

  let body: Buffer;
  if (url.pathname.startsWith('/item/')) {
    const id = Number(url.pathname.slice('/item/'.length));
    const padBytes = q.has('bytes') ? Math.max(0, Number(q.get('bytes')) - 21) : ITEM_PAD_BYTES;
    body = Buffer.from(JSON.stringify({ id, pad: 'x'.repeat(padBytes) }));
    headers['content-type'] = 'application/json';
  } else if (url.pathname === '/echo') {
    body = Buffer.from(
      JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: requestBody }),
    );
    headers['content-type'] = 'application/json';
  } else if (url.pathname === '/html' || q.get('type') === 'html') {
    body = Buffer.from(HTML_PAGE);
    headers['content-type'] = 'text/html; charset=utf-8';
  } else if (url.pathname === '/broken-json') {
    body = Buffer.from('{"oops": ');
    headers['content-type'] = 'application/json';
  } else if (url.pathname === '/latin1') {
    body = LATIN1_BODY;
    headers['content-type'] = 'text/plain; charset=iso-8859-1';
  } else if (q.get('type') === 'text') {
    body = Buffer.from(`path ${url.pathname}\n`);
    headers['content-type'] = 'text/plain; charset=utf-8';
  } else {
    body = Buffer.from(JSON.stringify({ ok: true, path: url.pathname }));
    headers['content-type'] = 'application/json';
  }

  if (encoding === 'bad') {
    body = Buffer.from('this is not gzip at all, not even close');
    headers['content-encoding'] = 'gzip';
  } else if (encoding === 'gzip') {
    body = zlib.gzipSync(body);
    headers['content-encoding'] = 'gzip';
  } else if (encoding === 'deflate') {
    body = zlib.deflateSync(body);
    headers['content-encoding'] = 'deflate';
  } else if (encoding === 'br') {
    body = zlib.brotliCompressSync(body);
    headers['content-encoding'] = 'br';
  }

  if (q.has('truncate')) {
    const keep = Number(q.get('truncate'));
    res.writeHead(status, { ...headers, 'content-length': body.length + 100 });
    res.write(body.subarray(0, keep), () => faults.wait(10, faults.destroy));
    return;
  }
  if (q.has('drip')) {
    const count = Number(q.get('drip'));
    const dripMs = Number(q.get('dripMs') ?? 100);
    const chunkBytes = Number(q.get('chunkBytes') ?? 16);
    const chunk = Buffer.alloc(chunkBytes, 'd');
    res.writeHead(status, {
      'content-type': 'application/octet-stream',
      'content-length': count * chunkBytes,
    });
    res.flushHeaders();
    let sent = 0;
    const step = (): void => {
      sent++;
      if (sent >= count) {
        res.end(chunk);
        return;
      }
      res.write(chunk);
      faults.wait(dripMs, step);
    };
    if (count > 0) faults.wait(dripMs, step);
    else res.end();
    return;
  }
  if (q.has('bodyDelay')) {
    res.writeHead(status, { ...headers, 'content-length': body.length });
    res.flushHeaders();
    faults.wait(Number(q.get('bodyDelay')), () => res.end(body));
    return;
  }
  res.writeHead(status, { ...headers, 'content-length': body.length });
  res.end(req.method === 'HEAD' ? undefined : body);
}

function retryAfterHeaders(q: URLSearchParams): http.OutgoingHttpHeaders {
  const headers: http.OutgoingHttpHeaders = {};
  const retryAfter = q.get('retryAfter');
  if (retryAfter !== null) headers['retry-after'] = retryAfter;
  const retryAfterIn = q.get('retryAfterIn');
  if (retryAfterIn !== null)
    headers['retry-after'] = new Date(Date.now() + Number(retryAfterIn) * 1000).toUTCString();
  return headers;
}

function sendText(
  res: http.ServerResponse,
  status: number,
  text: string,
  headers: http.OutgoingHttpHeaders,
): void {
  const body = Buffer.from(text);
  res.writeHead(status, { ...headers, 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}

/** Streams `size` bytes with backpressure, so a huge body costs the server no memory. */
function sendSized(
  res: http.ServerResponse,
  status: number,
  size: number,
  q: URLSearchParams,
  headers: http.OutgoingHttpHeaders,
): void {
  const out: http.OutgoingHttpHeaders = { ...headers, 'content-type': 'application/octet-stream' };
  if (q.get('chunked') !== '1') out['content-length'] = q.has('declare') ? Number(q.get('declare')) : size;
  res.writeHead(status, out);
  let left = size;
  const source = new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const take = Math.min(left, FILL_CHUNK.length);
      left -= take;
      this.push(take === FILL_CHUNK.length ? FILL_CHUNK : FILL_CHUNK.subarray(0, take));
    },
  });
  source.pipe(res);
  res.once('close', () => source.destroy());
}

/** A decompression bomb: N zero bytes compressed lazily, so the server stops when the client does. */
function sendBomb(res: http.ServerResponse, status: number, size: number, encoding: 'gzip' | 'br'): void {
  res.writeHead(status, { 'content-type': 'application/octet-stream', 'content-encoding': encoding });
  let left = size;
  const zeros = new Readable({
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const take = Math.min(left, ZERO_CHUNK.length);
      left -= take;
      this.push(take === ZERO_CHUNK.length ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, take));
    },
  });
  const compressor =
    encoding === 'br'
      ? zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } })
      : zlib.createGzip({ level: 1 });
  zeros.pipe(compressor).pipe(res);
  res.once('close', () => {
    zeros.destroy();
    compressor.destroy();
  });
}
