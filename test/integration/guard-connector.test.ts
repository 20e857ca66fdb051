// The guard's connector on real loopback sockets: rebinding, SNI and Host, DNS deadline, address fallback, keep-alive cost.
import { isIP } from 'node:net';
import { Agent, buildConnector, request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createDestinationGuard } from '../../functions/core/guard.ts';
import type { LookupAll } from '../../functions/core/types.ts';
import {
  type RecordingServer,
  type SniRecorder,
  startRecordingServer,
  startSniRecorder,
} from '../support/recording-server.ts';

const CONNECT_TIMEOUT_MS = 2_000;
const PUBLIC = '93.184.215.14';

let server: RecordingServer;

/** A resolver that gives each successive call the next answer (the last one repeats), counting calls. */
function scriptedLookup(answers: string[][]): { lookup: LookupAll; calls: () => number } {
  let calls = 0;
  const lookup: LookupAll = async () => {
    const answer = answers[Math.min(calls, answers.length - 1)] ?? [];
    calls++;
    return answer.map((address) => ({ address, family: isIP(address) === 6 ? 6 : 4 }));
  };
  return { lookup, calls: () => calls };
}

async function get(url: string, agent: Agent): Promise<{ status: number; body: string } | Error> {
  return request(url, { dispatcher: agent }).then(
    async (response) => ({ status: response.statusCode, body: await response.body.text() }),
    (error: unknown) => error as Error,
  );
}

beforeAll(async () => {
  server = await startRecordingServer();
});

afterAll(async () => {
  await server.close();
});

beforeEach(() => {
  server.reset();
});

describe('the connector connects to the address it checked', () => {
  it('resolves a name once, connects to the checked 127.0.0.1, and keeps the name in the Host header', async () => {
    // The second answer would be blocked; a connector that resolved again would fail (rebinding).
    const dns = scriptedLookup([['127.0.0.1'], ['10.0.0.1']]);
    const guard = createDestinationGuard({
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      allow: ['127.0.0.1/32'],
      lookup: dns.lookup,
    });
    const agent = new Agent({ connect: guard.connect });
    try {
      const url = `http://rebind.test:${server.port}/`;
      expect(guard.checkUrl(new URL(url))).toBeNull();
      expect(await get(url, agent)).toEqual({ status: 200, body: 'ok' });
      expect(dns.calls()).toBe(1);
      expect(server.connections()).toBe(1);
      expect(server.localAddresses()).toEqual(['127.0.0.1']);
      expect(server.hosts()).toEqual([`rebind.test:${server.port}`]);
    } finally {
      await agent.close();
    }
  });

  it('runs once per new connection: 20 keep-alive requests cost one lookup and one connection', async () => {
    const dns = scriptedLookup([['127.0.0.1']]);
    const guard = createDestinationGuard({
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      allow: ['private'],
      lookup: dns.lookup,
    });
    const agent = new Agent({ connect: guard.connect, connections: 1 });
    try {
      for (let index = 0; index < 20; index++) {
        expect(await get(`http://keepalive.test:${server.port}/`, agent)).toEqual({
          status: 200,
          body: 'ok',
        });
      }
      expect(dns.calls()).toBe(1);
      expect(server.connections()).toBe(1);
      expect(server.hits()).toBe(20);
    } finally {
      await agent.close();
    }
  });

  it('checks again on the next connection: public first, then a private answer is refused with zero hits', async () => {
    const dns = scriptedLookup([[PUBLIC], ['127.0.0.1']]);
    const attempted: string[] = [];
    const real = buildConnector({ timeout: CONNECT_TIMEOUT_MS });
    // Off-box addresses are routed to the loopback recorder: the test never sends a packet anywhere else.
    const sink: buildConnector.connector = (options, callback) => {
      attempted.push(options.hostname);
      return real({ ...options, hostname: '127.0.0.1', port: String(server.port) }, callback);
    };
    const guard = createDestinationGuard(
      { connectTimeoutMs: CONNECT_TIMEOUT_MS, lookup: dns.lookup },
      { connector: sink },
    );
    const first = new Agent({ connect: guard.connect });
    expect(await get('http://rebind.test/', first)).toEqual({ status: 200, body: 'ok' });
    await first.close();
    expect(attempted).toEqual([PUBLIC]);
    expect(server.connections()).toBe(1);

    server.reset();
    const second = new Agent({ connect: guard.connect });
    const error = await get('http://rebind.test/', second);
    await second.close();
    expect(error).toMatchObject({ itemCode: 'BLOCKED_DESTINATION' });
    expect((error as Error).message).toMatch(/rebind\.test resolves to 127\.0\.0\.1, which is loopback/);
    expect(dns.calls()).toBe(2);
    expect(attempted).toEqual([PUBLIC]);
    expect(server.connections()).toBe(0);
  });

  it('sends the name as TLS SNI while the socket goes to the checked address', async () => {
    const recorder: SniRecorder = await startSniRecorder();
    const dns = scriptedLookup([['127.0.0.1']]);
    const guard = createDestinationGuard({
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      allow: ['sni.test'],
      lookup: dns.lookup,
    });
    const agent = new Agent({ connect: guard.connect });
    try {
      const result = await get(`https://sni.test:${recorder.port}/`, agent);
      // The recorder refuses every handshake; what matters is what the client offered.
      expect(result).toBeInstanceOf(Error);
      expect(recorder.servernames()).toEqual(['sni.test']);
      expect(recorder.localAddresses()).toEqual(['127.0.0.1']);
    } finally {
      await agent.close();
      await recorder.close();
    }
  });

  it('tries the next checked address when one refuses, and only then', async () => {
    // Nothing listens on 127.0.0.2 at the recorder's port: the first address refuses the connection.
    const dns = scriptedLookup([['127.0.0.2', '127.0.0.1']]);
    const guard = createDestinationGuard({
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      allow: ['private'],
      lookup: dns.lookup,
    });
    const agent = new Agent({ connect: guard.connect });
    try {
      expect(await get(`http://twoaddresses.test:${server.port}/`, agent)).toEqual({
        status: 200,
        body: 'ok',
      });
      expect(server.localAddresses()).toEqual(['127.0.0.1']);
    } finally {
      await agent.close();
    }
  });

  it('reports the last refusal when every checked address refuses', async () => {
    const dns = scriptedLookup([['127.0.0.2', '127.0.0.3']]);
    const guard = createDestinationGuard({
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      allow: ['private'],
      lookup: dns.lookup,
    });
    const agent = new Agent({ connect: guard.connect });
    try {
      const error = await get(`http://refused.test:${server.port}/`, agent);
      expect(error).toMatchObject({ code: 'ECONNREFUSED' });
      expect(server.connections()).toBe(0);
    } finally {
      await agent.close();
    }
  });
});

describe('the connector fails closed on DNS', () => {
  it('bounds a lookup that never answers by the connect timeout (UND_ERR_CONNECT_TIMEOUT), with zero hits', async () => {
    const never: LookupAll = () => new Promise(() => {});
    const guard = createDestinationGuard({ connectTimeoutMs: 20, allow: ['private'], lookup: never });
    const agent = new Agent({ connect: guard.connect });
    try {
      const error = await get(`http://slow-dns.test:${server.port}/`, agent);
      expect(error).toMatchObject({ code: 'UND_ERR_CONNECT_TIMEOUT' });
      expect((error as Error).message).toMatch(/DNS lookup of slow-dns\.test timed out after 20 ms/);
      expect(server.connections()).toBe(0);
    } finally {
      await agent.close();
    }
  });

  it('keeps the resolver error as the cause of a DNS failure', async () => {
    const failing: LookupAll = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND gone.test'), { code: 'ENOTFOUND' });
    };
    const guard = createDestinationGuard({
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      allow: ['private'],
      lookup: failing,
    });
    const agent = new Agent({ connect: guard.connect });
    try {
      const error = await get(`http://gone.test:${server.port}/`, agent);
      expect(error).toMatchObject({ itemCode: 'DNS', temporary: false });
      expect((error as Error).cause).toMatchObject({ code: 'ENOTFOUND' });
      expect(server.connections()).toBe(0);
    } finally {
      await agent.close();
    }
  });
});
