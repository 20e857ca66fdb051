// Loopback servers that count every connection and request, so a guard test can prove "zero hits" (or some).
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';

export interface RecordingServer {
  /** The same port on 127.0.0.1 and, when `ipv6` is true, on ::1. */
  port: number;
  /** Whether a listener on ::1 is up (false where the machine has no IPv6 loopback). */
  ipv6: boolean;
  /** TCP connections accepted since the last reset, on either listener. */
  connections(): number;
  /** HTTP requests answered since the last reset. */
  hits(): number;
  /** The Host header of each request since the last reset, in order. */
  hosts(): readonly string[];
  /** The local address each connection arrived on ('127.0.0.1' or '::1'). */
  localAddresses(): readonly string[];
  reset(): void;
  close(): Promise<void>;
}

const PORT_ATTEMPTS = 10;

/** node:http answering 200 "ok" on 127.0.0.1 port 0, and on ::1 at the same port when it can. */
export async function startRecordingServer(): Promise<RecordingServer> {
  let connections = 0;
  let hosts: string[] = [];
  let localAddresses: string[] = [];
  const sockets = new Set<Socket>();

  const make = (): http.Server => {
    const server = http.createServer((request, response) => {
      hosts.push(request.headers.host ?? '');
      response.setHeader('content-type', 'text/plain');
      response.end('ok');
    });
    server.on('connection', (socket: Socket) => {
      connections++;
      localAddresses.push(socket.localAddress ?? '');
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    return server;
  };

  const v4 = make();
  v4.listen(0, '127.0.0.1');
  await once(v4, 'listening');
  let port = (v4.address() as AddressInfo).port;
  // The ::1 listener must share the port, so a URL with [::1] reaches the same counters; retry on a clash.
  let v6: http.Server | null = null;
  for (let attempt = 0; attempt < PORT_ATTEMPTS && v6 === null; attempt++) {
    const candidate = make();
    const outcome = await listenOrError(candidate, port, '::1');
    if (outcome === null) {
      v6 = candidate;
    } else if (outcome === 'EADDRINUSE') {
      await closeServer(v4);
      v4.listen(0, '127.0.0.1');
      await once(v4, 'listening');
      port = (v4.address() as AddressInfo).port;
    } else {
      break;
    }
  }

  return {
    port,
    ipv6: v6 !== null,
    connections: () => connections,
    hits: () => hosts.length,
    hosts: () => hosts,
    localAddresses: () => localAddresses,
    reset: () => {
      connections = 0;
      hosts = [];
      localAddresses = [];
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await Promise.all([closeServer(v4), v6 === null ? Promise.resolve() : closeServer(v6)]);
    },
  };
}

export interface SniRecorder {
  port: number;
  /** The TLS server name (SNI) each handshake offered, in order. */
  servernames(): readonly string[];
  /** The local address each connection arrived on. */
  localAddresses(): readonly string[];
  close(): Promise<void>;
}

/**
 * A TLS listener on 127.0.0.1 that records the SNI a client offers and then refuses the handshake: enough to
 * prove which name the client asked for and which address it reached, with no certificate to generate.
 */
export async function startSniRecorder(): Promise<SniRecorder> {
  const servernames: string[] = [];
  const localAddresses: string[] = [];
  const sockets = new Set<Socket>();
  const server = tls.createServer({
    SNICallback: (servername, callback) => {
      servernames.push(servername);
      callback(new Error('the SNI recorder has no certificate'), undefined);
    },
  });
  server.on('connection', (socket: Socket) => {
    localAddresses.push(socket.localAddress ?? '');
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // Handshakes fail by design; the recorder has nothing more to say about them.
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    servernames: () => servernames,
    localAddresses: () => localAddresses,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await closeServer(server);
    },
  };
}

function listenOrError(server: http.Server, port: number, host: string): Promise<string | null> {
  return new Promise((resolve) => {
    const onError = (error: NodeJS.ErrnoException): void => resolve(error.code ?? 'UNKNOWN');
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(null);
    });
  });
}

function closeServer(server: http.Server | tls.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
