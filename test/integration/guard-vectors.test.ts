// The SSRF vector table: each URL judged by checkUrl, then sent through the guard's connector to a loopback recorder.
//
// A blocked vector must reach the recorder ZERO times; an allowed one must reach it. Vectors that name a
// loopback address use the real connector end to end. Vectors whose destination is off this machine (10/8,
// 169.254.169.254, NAT64...) use the guard's connector seam routed to the recorder, so a guard bug shows up
// as a hit here instead of a packet on the network.
import { isIP } from 'node:net';
import { Agent, buildConnector, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDestinationGuard, type DestinationGuardSeams } from '../../functions/core/guard.ts';
import type { LookupAll } from '../../functions/core/types.ts';
import { type RecordingServer, startRecordingServer } from '../support/recording-server.ts';

type Expect = 'blocked' | 'dns' | 'allowed';

interface Vector {
  category: string;
  /** `{port}` is replaced by the recorder's port. */
  url: string;
  expect: Expect;
  /** What the error message must say (for 'blocked' and 'dns'). */
  rule?: RegExp;
  /** Where the first refusal happens: 'url' (checkUrl) or only 'connect' (needs DNS). */
  stage?: 'url' | 'connect';
  allow?: string[];
  /** The connector never sees this refusal (scheme, credentials): checkUrl alone must stop it. */
  urlOnly?: boolean;
  /** Open the recorder's port in the default policy, so the address (not the port) is what gets judged. */
  openPort?: boolean;
}

const PUBLIC = '93.184.215.14';
/** The injected resolver: names → answers, or an error code. */
const FAKE_DNS: Record<string, string[] | string> = {
  'loopback.test': ['127.0.0.1'],
  'v6loopback.test': ['::1'],
  'mapped.test': ['::ffff:127.0.0.1'],
  'zero.test': ['0.0.0.0'],
  'metadata.test': ['169.254.169.254'],
  'ecs.test': ['169.254.170.2'],
  'rfc1918.test': ['10.1.2.3'],
  'cgnat.test': ['100.64.1.1'],
  'ula.test': ['fd12:3456::1'],
  'imds6.test': ['fd00:ec2::254'],
  'nat64.test': ['64:ff9b::a9fe:a9fe'],
  'mixed.test': [PUBLIC, '127.0.0.1'],
  'mixed-private-first.test': ['10.0.0.1', PUBLIC],
  'mixed-v6.test': [PUBLIC, '::1'],
  'public.test': [PUBLIC],
  localhost: ['127.0.0.1'],
  'nx.test': 'ENOTFOUND',
  'again.test': 'EAI_AGAIN',
  'empty.test': [],
};

const LOOPBACK = /is loopback \(blocked by default; --allow-private opens it\)/;
const LOOPBACK_NAME = /is a loopback name \(refused by name before any lookup/;
const PORT = /port \d+ is not allowed/;
const EXPLICIT_ONLY = /only an explicit --allow of the address or its CIDR opens it/;

const VECTORS: Vector[] = [
  // IP literal tricks: WHATWG canonicalizes each to dotted form; the guard judges the canonical address.
  { category: 'literal', url: 'http://127.0.0.1:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://127.1:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://2130706433:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://0x7f.1:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://017700000001:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://0177.0.0.1:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://0x7f000001:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://127.000.000.001:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://１２７.０.０.１:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://%31%32%37.0.0.1:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://127.0.0.1.:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://127.0.0.1%2e:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://127.0.0.2:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://0:{port}/', expect: 'blocked', rule: /0\.0\.0\.0 is unspecified/ },
  { category: 'literal', url: 'http://0.0.0.0:{port}/', expect: 'blocked', rule: /is unspecified/ },
  { category: 'literal', url: 'http://[::1]:{port}/', expect: 'blocked', rule: LOOPBACK },
  { category: 'literal', url: 'http://[::]:{port}/', expect: 'blocked', rule: /:: is unspecified/ },
  {
    category: 'literal',
    url: 'http://[::ffff:7f00:1]:{port}/',
    expect: 'blocked',
    rule: /IPv4-mapped 127\.0\.0\.1\) is loopback/,
  },
  {
    category: 'literal',
    url: 'http://[::ffff:127.0.0.1]:{port}/',
    expect: 'blocked',
    rule: /IPv4-mapped 127\.0\.0\.1/,
  },
  {
    category: 'literal',
    url: 'http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/',
    expect: 'blocked',
    rule: LOOPBACK,
  },
  {
    category: 'literal',
    url: 'http://[::127.0.0.1]:{port}/',
    expect: 'blocked',
    rule: /IPv4-compatible ::\/96/,
  },
  {
    category: 'literal',
    url: 'http://[::ffff:0:7f00:1]:{port}/',
    expect: 'blocked',
    rule: /IPv4-translated/,
  },
  { category: 'literal', url: 'http://[64:ff9b::7f00:1]/', expect: 'blocked', rule: /NAT64/ },
  { category: 'literal', url: 'http://[64:ff9b:1::a9fe:a9fe]/', expect: 'blocked', rule: /NAT64/ },
  { category: 'literal', url: 'http://10.0.0.1/', expect: 'blocked', rule: /private, RFC 1918/ },
  { category: 'literal', url: 'http://172.16.5.4/', expect: 'blocked', rule: /private, RFC 1918/ },
  { category: 'literal', url: 'http://192.168.1.1/', expect: 'blocked', rule: /private, RFC 1918/ },
  { category: 'literal', url: 'http://100.64.0.1/', expect: 'blocked', rule: /CGNAT/ },
  { category: 'literal', url: 'http://169.254.169.254/', expect: 'blocked', rule: /link-local 169\.254/ },
  { category: 'literal', url: 'http://169.254.170.2/', expect: 'blocked', rule: /link-local 169\.254/ },
  {
    category: 'literal',
    url: 'http://0251.0376.0251.0376/',
    expect: 'blocked',
    rule: /169\.254\.169\.254 is link-local/,
  },
  {
    category: 'literal',
    url: 'http://[::ffff:a9fe:a9fe]/',
    expect: 'blocked',
    rule: /IPv4-mapped 169\.254\.169\.254/,
  },
  {
    category: 'literal',
    url: 'http://[fd00:ec2::254]/',
    expect: 'blocked',
    rule: /AWS IPv6 instance metadata/,
  },
  { category: 'literal', url: 'http://[fd12:3456::1]/', expect: 'blocked', rule: /unique local/ },
  { category: 'literal', url: 'http://[fe80::1]/', expect: 'blocked', rule: /link-local fe80/ },
  { category: 'literal', url: 'http://224.0.0.1/', expect: 'blocked', rule: /multicast/ },
  { category: 'literal', url: 'http://[ff02::1]/', expect: 'blocked', rule: /multicast/ },
  { category: 'literal', url: 'http://255.255.255.255/', expect: 'blocked', rule: /broadcast/ },
  { category: 'literal', url: 'http://198.18.0.1/', expect: 'blocked', rule: /benchmarking/ },
  { category: 'literal', url: 'http://192.0.2.1/', expect: 'blocked', rule: /documentation/ },
  { category: 'literal', url: 'http://203.0.113.5/', expect: 'blocked', rule: /documentation/ },
  { category: 'literal', url: 'http://192.0.0.170/', expect: 'blocked', rule: /IETF protocol assignments/ },
  { category: 'literal', url: 'http://240.0.0.1/', expect: 'blocked', rule: /reserved/ },
  { category: 'literal', url: 'http://[2001:db8::1]/', expect: 'blocked', rule: /documentation/ },
  { category: 'literal', url: 'http://[2002:7f00:1::1]/', expect: 'blocked', rule: /6to4/ },
  { category: 'literal', url: 'http://[2001:0:4136:e378::1]/', expect: 'blocked', rule: /Teredo/ },
  { category: 'literal', url: 'http://[fec0::1]/', expect: 'blocked', rule: /site-local/ },
  { category: 'literal', url: 'http://100.100.100.200/', expect: 'blocked', rule: /Alibaba Cloud metadata/ },
  // Userinfo tricks: the host is what follows the last "@"; credentials are refused outright.
  {
    category: 'userinfo',
    url: 'http://a.com@127.0.0.1:{port}/',
    expect: 'blocked',
    rule: /credentials|loopback/,
  },
  {
    category: 'userinfo',
    url: 'http://user:pass@127.0.0.1:{port}/',
    expect: 'blocked',
    rule: /credentials|loopback/,
  },
  { category: 'userinfo', url: 'http://127.0.0.1:{port}\\@public.test/', expect: 'blocked', rule: LOOPBACK },
  {
    category: 'userinfo',
    url: 'http://public.test@public.test/',
    expect: 'blocked',
    rule: /credentials/,
    urlOnly: true,
  },
  // Localhost names: refused by name, before any lookup.
  { category: 'localhost name', url: 'http://localhost:{port}/', expect: 'blocked', rule: LOOPBACK_NAME },
  { category: 'localhost name', url: 'http://LOCALHOST.:{port}/', expect: 'blocked', rule: LOOPBACK_NAME },
  { category: 'localhost name', url: 'http://x.localhost:{port}/', expect: 'blocked', rule: LOOPBACK_NAME },
  { category: 'localhost name', url: 'http://a.b.LocalHost:{port}/', expect: 'blocked', rule: LOOPBACK_NAME },
  { category: 'localhost name', url: 'http://ⓛocalhost:{port}/', expect: 'blocked', rule: LOOPBACK_NAME },
  { category: 'localhost name', url: 'http://localhost%2e:{port}/', expect: 'blocked', rule: LOOPBACK_NAME },
  // Names that resolve (through the injected resolver) to forbidden addresses: refused in the connector.
  {
    category: 'resolves private',
    url: 'http://loopback.test:{port}/',
    openPort: true,
    expect: 'blocked',
    stage: 'connect',
    rule: /loopback\.test resolves to 127\.0\.0\.1, which is loopback/,
  },
  {
    category: 'resolves private',
    url: 'http://v6loopback.test:{port}/',
    openPort: true,
    expect: 'blocked',
    stage: 'connect',
    rule: LOOPBACK,
  },
  {
    category: 'resolves private',
    url: 'http://mapped.test:{port}/',
    openPort: true,
    expect: 'blocked',
    stage: 'connect',
    rule: /IPv4-mapped 127\.0\.0\.1/,
  },
  {
    category: 'resolves private',
    url: 'http://zero.test:{port}/',
    openPort: true,
    expect: 'blocked',
    stage: 'connect',
    rule: /unspecified/,
  },
  {
    category: 'resolves private',
    url: 'http://metadata.test/',
    expect: 'blocked',
    stage: 'connect',
    rule: /link-local/,
  },
  {
    category: 'resolves private',
    url: 'http://ecs.test/',
    expect: 'blocked',
    stage: 'connect',
    rule: /169\.254\.170\.2, which is link-local/,
  },
  {
    category: 'resolves private',
    url: 'http://rfc1918.test/',
    expect: 'blocked',
    stage: 'connect',
    rule: /RFC 1918/,
  },
  {
    category: 'resolves private',
    url: 'http://cgnat.test/',
    expect: 'blocked',
    stage: 'connect',
    rule: /CGNAT/,
  },
  {
    category: 'resolves private',
    url: 'http://ula.test/',
    expect: 'blocked',
    stage: 'connect',
    rule: /unique local/,
  },
  {
    category: 'resolves private',
    url: 'http://imds6.test/',
    expect: 'blocked',
    stage: 'connect',
    rule: /metadata/,
  },
  {
    category: 'resolves private',
    url: 'http://nat64.test/',
    expect: 'blocked',
    stage: 'connect',
    rule: /NAT64/,
  },
  // A mixed answer: one bad address rejects the name, whatever its position.
  {
    category: 'mixed answer',
    url: 'http://mixed.test/',
    expect: 'blocked',
    stage: 'connect',
    rule: /127\.0\.0\.1, which is loopback/,
  },
  {
    category: 'mixed answer',
    url: 'http://mixed-private-first.test/',
    expect: 'blocked',
    stage: 'connect',
    rule: /RFC 1918/,
  },
  {
    category: 'mixed answer',
    url: 'http://mixed-v6.test/',
    expect: 'blocked',
    stage: 'connect',
    rule: /::1, which is loopback/,
  },
  // DNS failures fail closed.
  {
    category: 'dns',
    url: 'http://nx.test/',
    expect: 'dns',
    stage: 'connect',
    rule: /nx\.test did not resolve \(ENOTFOUND\)/,
  },
  { category: 'dns', url: 'http://again.test/', expect: 'dns', stage: 'connect', rule: /EAI_AGAIN/ },
  {
    category: 'dns',
    url: 'http://empty.test/',
    expect: 'dns',
    stage: 'connect',
    rule: /resolved to no address/,
  },
  // Ports: the default policy opens 80 and 443 only.
  { category: 'port', url: 'http://public.test:8080/', expect: 'blocked', rule: PORT },
  { category: 'port', url: 'https://public.test:22/', expect: 'blocked', rule: /port 22 is not allowed/ },
  { category: 'port', url: 'http://public.test:443/', expect: 'allowed' },
  { category: 'port', url: 'http://public.test/', expect: 'allowed' },
  { category: 'port', url: 'http://93.184.215.14/', expect: 'allowed' },
  { category: 'port', url: 'http://93.184.215.14:25/', expect: 'blocked', rule: /port 25 is not allowed/ },
  // Schemes: only http and https ever reach the connector.
  {
    category: 'scheme',
    url: 'file:///etc/passwd',
    expect: 'blocked',
    rule: /scheme file: is not allowed/,
    urlOnly: true,
  },
  {
    category: 'scheme',
    url: 'ftp://127.0.0.1:{port}/',
    expect: 'blocked',
    rule: /scheme ftp:/,
    urlOnly: true,
  },
  {
    category: 'scheme',
    url: 'gopher://127.0.0.1:{port}/',
    expect: 'blocked',
    rule: /scheme gopher:/,
    urlOnly: true,
  },
  { category: 'scheme', url: 'ws://public.test/', expect: 'blocked', rule: /scheme ws:/, urlOnly: true },
  // The allow list, as an operator writes it: "private", hosts, IPs and CIDRs; each matches any port.
  { category: 'allow private', allow: ['private'], url: 'http://127.0.0.1:{port}/', expect: 'allowed' },
  { category: 'allow private', allow: ['private'], url: 'http://127.1:{port}/', expect: 'allowed' },
  { category: 'allow private', allow: ['private'], url: 'http://[::1]:{port}/', expect: 'allowed' },
  { category: 'allow private', allow: ['private'], url: 'http://localhost:{port}/', expect: 'allowed' },
  { category: 'allow private', allow: ['private'], url: 'http://loopback.test:{port}/', expect: 'allowed' },
  { category: 'allow private', allow: ['private'], url: 'http://10.0.0.1:8080/', expect: 'allowed' },
  { category: 'allow private', allow: ['private'], url: 'http://cgnat.test/', expect: 'allowed' },
  { category: 'allow private', allow: ['private'], url: 'http://[fd12:3456::1]/', expect: 'allowed' },
  {
    category: 'allow private',
    allow: ['private'],
    url: 'http://169.254.169.254/',
    expect: 'blocked',
    rule: EXPLICIT_ONLY,
  },
  {
    category: 'allow private',
    allow: ['private'],
    url: 'http://metadata.test/',
    expect: 'blocked',
    stage: 'connect',
    rule: /link-local/,
  },
  {
    category: 'allow private',
    allow: ['private'],
    url: 'http://[fe80::1]/',
    expect: 'blocked',
    rule: /link-local fe80/,
  },
  {
    category: 'allow private',
    allow: ['private'],
    url: 'http://[fd00:ec2::254]/',
    expect: 'blocked',
    rule: /metadata/,
  },
  {
    category: 'allow private',
    allow: ['private'],
    url: 'http://100.100.100.200/',
    expect: 'blocked',
    rule: /metadata/,
  },
  {
    category: 'allow private',
    allow: ['private'],
    url: 'http://0:{port}/',
    expect: 'blocked',
    rule: /unspecified/,
  },
  {
    category: 'allow private',
    allow: ['private'],
    url: 'http://public.test:8080/',
    expect: 'blocked',
    stage: 'connect',
    rule: PORT,
  },
  {
    category: 'allow host',
    allow: ['loopback.test'],
    url: 'http://loopback.test:{port}/',
    expect: 'allowed',
  },
  {
    category: 'allow host',
    allow: ['Loopback.Test.'],
    url: 'http://LOOPBACK.test.:{port}/',
    expect: 'allowed',
  },
  {
    category: 'allow host',
    allow: ['loopback.test'],
    url: 'http://mapped.test:{port}/',
    openPort: true,
    expect: 'blocked',
    stage: 'connect',
    rule: LOOPBACK,
  },
  { category: 'allow host', allow: ['localhost'], url: 'http://localhost:{port}/', expect: 'allowed' },
  {
    category: 'allow host',
    allow: ['localhost'],
    url: 'http://x.localhost:{port}/',
    expect: 'blocked',
    rule: LOOPBACK_NAME,
  },
  { category: 'allow IP', allow: ['127.0.0.1'], url: 'http://127.0.0.1:{port}/', expect: 'allowed' },
  { category: 'allow IP', allow: ['127.0.0.1'], url: 'http://loopback.test:{port}/', expect: 'allowed' },
  {
    category: 'allow IP',
    allow: ['127.0.0.1'],
    url: 'http://127.0.0.2:{port}/',
    expect: 'blocked',
    rule: LOOPBACK,
  },
  {
    category: 'allow IP',
    allow: ['127.0.0.1'],
    url: 'http://[::1]:{port}/',
    expect: 'blocked',
    rule: LOOPBACK,
  },
  {
    category: 'allow IP',
    allow: ['127.0.0.1'],
    url: 'http://v6loopback.test:{port}/',
    expect: 'blocked',
    stage: 'connect',
    rule: LOOPBACK,
  },
  { category: 'allow IP', allow: ['::1'], url: 'http://[::1]:{port}/', expect: 'allowed' },
  {
    category: 'allow IP',
    allow: ['::1'],
    url: 'http://127.0.0.1:{port}/',
    expect: 'blocked',
    rule: LOOPBACK,
  },
  { category: 'allow IP', allow: ['169.254.169.254'], url: 'http://169.254.169.254/', expect: 'allowed' },
  { category: 'allow CIDR', allow: ['127.0.0.0/8'], url: 'http://127.1:{port}/', expect: 'allowed' },
  {
    category: 'allow CIDR',
    allow: ['127.0.0.0/8'],
    url: 'http://[::1]:{port}/',
    expect: 'blocked',
    rule: LOOPBACK,
  },
  { category: 'allow CIDR', allow: ['10.0.0.0/8'], url: 'http://10.9.8.7:9000/', expect: 'allowed' },
  {
    category: 'allow CIDR',
    allow: ['10.0.0.0/8'],
    url: 'http://192.168.0.1/',
    expect: 'blocked',
    rule: /RFC 1918/,
  },
  { category: 'allow CIDR', allow: ['169.254.0.0/16'], url: 'http://metadata.test/', expect: 'allowed' },
  { category: 'allow CIDR', allow: ['fe80::/10'], url: 'http://[fe80::1]/', expect: 'allowed' },
  {
    category: 'allow CIDR',
    allow: ['fe80::/10'],
    url: 'http://169.254.169.254/',
    expect: 'blocked',
    rule: /link-local/,
  },
];

const CONNECT_TIMEOUT_MS = 2_000;

let server: RecordingServer;
/** Hostnames the guard handed to the loopback sink (the address it would have connected to). */
let sinkAttempts: string[] = [];
const lookupCalls: string[] = [];

const fakeLookup: LookupAll = async (hostname) => {
  lookupCalls.push(hostname);
  const answer = FAKE_DNS[hostname.toLowerCase().replace(/\.$/, '')];
  if (answer === undefined || typeof answer === 'string') {
    throw Object.assign(new Error(`fake DNS: ${hostname}`), { code: answer ?? 'ENOTFOUND' });
  }
  return answer.map((address) => ({ address, family: isIP(address) === 6 ? 6 : 4 }));
};

/** True when every address this URL can lead to is on this machine, so the real connector is safe. */
function staysOnLoopback(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const addresses = isIP(host) !== 0 ? [host] : fakeAnswers(host);
  return addresses.every((address) => /^(127\.|0\.0\.0\.0$|::1$|::$|::ffff:7f|::ffff:127\.)/.test(address));
}

function checkedAddress(url: URL): string {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return isIP(host) !== 0 ? host : (fakeAnswers(host)[0] ?? '');
}

function fakeAnswers(host: string): string[] {
  const answer = FAKE_DNS[host.replace(/\.$/, '')];
  return Array.isArray(answer) ? answer : [];
}

beforeAll(async () => {
  server = await startRecordingServer();
});

afterAll(async () => {
  await server.close();
});

describe('the guard refuses every SSRF vector with zero hits, and lets allowed ones through', () => {
  it('holds at least 60 vectors', () => {
    expect(VECTORS.length).toBeGreaterThanOrEqual(60);
  });

  it.each(VECTORS)('$category: $url → $expect $allow', async (vector) => {
    const text = vector.url.replaceAll('{port}', String(server.port));
    const url = new URL(text);
    if (url.hostname === '[::1]' && !server.ipv6) throw new Error('this machine has no ::1 loopback');
    server.reset();
    sinkAttempts = [];
    lookupCalls.length = 0;
    const seams: DestinationGuardSeams = staysOnLoopback(url) ? {} : { connector: loopbackSink(server.port) };
    const guard = createDestinationGuard(
      {
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
        lookup: fakeLookup,
        allow: vector.allow ?? [],
        allowedPorts: vector.openPort ? [80, 443, server.port] : [80, 443],
      },
      seams,
    );

    const verdict = guard.checkUrl(url);
    if (vector.expect === 'allowed' || vector.stage === 'connect') {
      expect(verdict).toBeNull();
    } else {
      expect(verdict?.code).toBe('BLOCKED_DESTINATION');
      expect(verdict?.message).toMatch(vector.rule ?? /./);
    }

    if (!vector.urlOnly) {
      // The connector alone, as if checkUrl had been skipped: it must hold the same line.
      const agent = new Agent({ connect: guard.connect });
      try {
        const result = await request(stripCredentials(url), { dispatcher: agent }).then(
          async (response) => ({ status: response.statusCode, body: await response.body.text() }),
          (error: unknown) => error,
        );
        if (vector.expect === 'allowed') {
          expect(result).toEqual({ status: 200, body: 'ok' });
        } else {
          const error = result as { itemCode?: unknown; message?: unknown; temporary?: unknown };
          expect(error.itemCode).toBe(vector.expect === 'dns' ? 'DNS' : 'BLOCKED_DESTINATION');
          expect(error.message).toMatch(vector.rule ?? /./);
          expect(error.temporary).toBe(url.hostname === 'again.test');
        }
      } finally {
        await agent.close();
      }
    }

    if (vector.expect === 'allowed') {
      expect(server.hits()).toBe(1);
      expect(server.connections()).toBe(1);
      // Through the sink, the guard must have connected to the very address it checked.
      if (seams.connector) expect(sinkAttempts).toEqual([checkedAddress(url)]);
    } else {
      expect(server.connections()).toBe(0);
      expect(server.hits()).toBe(0);
      expect(sinkAttempts).toEqual([]);
    }
    if (vector.rule === LOOPBACK_NAME) expect(lookupCalls).toEqual([]);
  });
});

/** A connector that records where the guard sent it, then connects to the recorder on loopback instead. */
function loopbackSink(port: number): NonNullable<DestinationGuardSeams['connector']> {
  const real = buildConnector({ timeout: CONNECT_TIMEOUT_MS });
  return (options, callback) => {
    sinkAttempts.push(options.hostname);
    return real({ ...options, protocol: 'http:', hostname: '127.0.0.1', port: String(port) }, callback);
  };
}

function stripCredentials(url: URL): URL {
  const copy = new URL(url);
  copy.username = '';
  copy.password = '';
  return copy;
}
