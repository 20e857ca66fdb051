// A local stand-in for API Gateway (HTTP API, payload 2.0) in front of the api function, like `sam local start-api`.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';

/** API Gateway's own request payload limit. */
export const MAX_REQUEST_BYTES = 10 * 1024 * 1024;
const LOOPBACK = '127.0.0.1';

/** The routes the stack declares (DESIGN.md); anything else reaches the function as `$default`. */
const ROUTES: ReadonlyArray<{ method: string; pattern: RegExp; routeKey: string; names: string[] }> = [
  { method: 'POST', pattern: /^\/jobs$/, routeKey: 'POST /jobs', names: [] },
  { method: 'GET', pattern: /^\/jobs\/([^/]+)$/, routeKey: 'GET /jobs/{id}', names: ['id'] },
  {
    method: 'POST',
    pattern: /^\/jobs\/([^/]+)\/redrive$/,
    routeKey: 'POST /jobs/{id}/redrive',
    names: ['id'],
  },
];

export interface LocalApiOptions {
  /** Runs the function with an event (through the local invoker) and returns what it returned. */
  invoke(event: APIGatewayProxyEventV2): Promise<unknown>;
  /** 0 picks a free port. */
  port?: number;
  /** One line per request ("POST /jobs 202 41 ms"). */
  log?: (line: string) => void;
}

export interface LocalApi {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startLocalApi(options: LocalApiOptions): Promise<LocalApi> {
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const startedAt = performance.now();
    void handle(req, res, options)
      .catch((error: unknown) => {
        options.log?.(`local api: ${String(error)}`);
        if (!res.headersSent) sendJson(res, 502, { message: 'Internal Server Error' });
        else res.destroy();
      })
      .finally(() =>
        options.log?.(
          `${req.method} ${req.url} ${res.statusCode} ${Math.round(performance.now() - startedAt)} ms`,
        ),
      );
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(options.port ?? 0, LOOPBACK);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${LOOPBACK}:${port}`,
    port,
    close: () => {
      closed ??= new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}

async function handle(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  options: LocalApiOptions,
): Promise<void> {
  const body = await readBody(req);
  if (body === null) {
    sendJson(res, 413, { message: 'Request Entity Too Large' });
    return;
  }
  const event = toEvent(req, body);
  let result: unknown;
  try {
    result = await options.invoke(event);
  } catch {
    // What API Gateway answers when the integration fails; the invoker has already logged why.
    sendJson(res, 502, { message: 'Internal Server Error' });
    return;
  }
  writeResult(res, result);
}

/** null when the body is over API Gateway's limit. */
async function readBody(req: http.IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_REQUEST_BYTES) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The event API Gateway's HTTP API sends with payload format 2.0. */
export function toEvent(
  req: http.IncomingMessage,
  body: Buffer,
  now: Date = new Date(),
): APIGatewayProxyEventV2 {
  const url = new URL(req.url ?? '/', 'http://local.invalid');
  const method = (req.method ?? 'GET').toUpperCase();
  const headers: Record<string, string> = {};
  let cookies: string[] | undefined;
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    if (name === 'cookie') {
      cookies = (Array.isArray(value) ? value.join('; ') : value).split(/;\s*/).filter(Boolean);
      continue;
    }
    // HTTP API joins repeated headers with commas.
    headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  const query: Record<string, string> = {};
  for (const [name, value] of url.searchParams)
    query[name] = name in query ? `${query[name]},${value}` : value;

  const route = ROUTES.find(
    (candidate) => candidate.method === method && candidate.pattern.test(url.pathname),
  );
  const pathParameters: Record<string, string> = {};
  if (route) {
    const match = route.pattern.exec(url.pathname);
    route.names.forEach((name, index) => {
      const value = match?.[index + 1];
      if (value !== undefined) pathParameters[name] = decodeOrRaw(value);
    });
  }
  const contentType = headers['content-type'] ?? '';
  const isText =
    body.length === 0 ||
    /^(text\/|application\/(json|xml|x-www-form-urlencoded)|.*\+json)/i.test(contentType);
  const host = headers.host ?? LOOPBACK;
  const event: APIGatewayProxyEventV2 = {
    version: '2.0',
    routeKey: route?.routeKey ?? '$default',
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    headers,
    requestContext: {
      accountId: 'local',
      apiId: 'local',
      domainName: host,
      domainPrefix: host.split('.')[0] ?? host,
      http: {
        method,
        path: url.pathname,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.socket.remoteAddress ?? LOOPBACK,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      routeKey: route?.routeKey ?? '$default',
      stage: '$default',
      time: now.toISOString(),
      timeEpoch: now.getTime(),
    },
    isBase64Encoded: !isText,
  };
  if (cookies) event.cookies = cookies;
  if (Object.keys(query).length > 0) event.queryStringParameters = query;
  if (Object.keys(pathParameters).length > 0) event.pathParameters = pathParameters;
  if (body.length > 0) event.body = isText ? body.toString('utf8') : body.toString('base64');
  return event;
}

/**
 * A structured result is sent as given; anything else is what API Gateway infers for payload 2.0: status
 * 200 and the value as JSON (a string is sent as is).
 */
export function writeResult(res: http.ServerResponse, result: unknown): void {
  if (!isStructured(result)) {
    const text = typeof result === 'string' ? result : JSON.stringify(result ?? null);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
  }
  const body =
    result.body === undefined
      ? Buffer.alloc(0)
      : Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8');
  const headers: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(result.headers ?? {}))
    headers[name.toLowerCase()] = String(value);
  if (result.cookies && result.cookies.length > 0) headers['set-cookie'] = result.cookies;
  headers['content-length'] = body.length;
  res.writeHead(result.statusCode ?? 200, headers);
  res.end(body);
}

function isStructured(result: unknown): result is APIGatewayProxyStructuredResultV2 {
  return (
    typeof result === 'object' &&
    result !== null &&
    typeof (result as { statusCode?: unknown }).statusCode === 'number'
  );
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** A broken %-escape is passed on as written: the handler answers it (400), as behind API Gateway. */
function decodeOrRaw(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
