// The guard's pure parts: the --allow grammar, option validation and checkUrl's verdicts and cache (no sockets).
import { describe, expect, it } from 'vitest';
import { createDestinationGuard, parseAllowList } from '../../functions/core/guard.ts';

const CONNECT_TIMEOUT_MS = 1_000;

describe('parseAllowList', () => {
  it.each([
    { entry: 'private', hosts: [], v4: [], v6: [], open: true },
    { entry: ' PRIVATE ', hosts: [], v4: [], v6: [], open: true },
    { entry: 'api.internal', hosts: ['api.internal'], v4: [], v6: [], open: false },
    { entry: 'API.Internal.', hosts: ['api.internal'], v4: [], v6: [], open: false },
    { entry: 'Bücher.de', hosts: ['xn--bcher-kva.de'], v4: [], v6: [], open: false },
    { entry: 'svc_a.local', hosts: ['svc_a.local'], v4: [], v6: [], open: false },
    { entry: '10.1.2.3', hosts: [], v4: ['10.1.2.3/32'], v6: [], open: false },
    { entry: '10.0.0.0/8', hosts: [], v4: ['10.0.0.0/8'], v6: [], open: false },
    { entry: '::1', hosts: [], v4: [], v6: ['::1/128'], open: false },
    { entry: '[fd00::1]', hosts: [], v4: [], v6: ['fd00::1/128'], open: false },
    { entry: 'fd00::/8', hosts: [], v4: [], v6: ['fd00::/8'], open: false },
    // Addresses are judged as IPv4 once unmapped, so a mapped entry is kept as IPv4 to match them.
    { entry: '::ffff:10.0.0.1', hosts: [], v4: ['10.0.0.1/32'], v6: [], open: false },
    { entry: '::ffff:10.0.0.0/104', hosts: [], v4: ['10.0.0.0/8'], v6: [], open: false },
  ])('accepts $entry', ({ entry, hosts, v4, v6, open }) => {
    const list = parseAllowList([entry]);
    expect([...list.hosts]).toEqual(hosts);
    expect(list.v4.map(([base, bits]) => `${base.toString()}/${bits}`)).toEqual(v4);
    expect(list.v6.map(([base, bits]) => `${base.toString()}/${bits}`)).toEqual(v6);
    expect(list.private).toBe(open);
  });

  it.each([
    { entry: '', why: /empty/ },
    { entry: '10.0.0.0/33', why: /not a valid CIDR/ },
    { entry: '10.0/8', why: /not a valid CIDR/ },
    { entry: 'fe80::/129', why: /not a valid CIDR/ },
    { entry: '*.example.com', why: /no wildcards/ },
    { entry: 'https://example.com', why: /not a URL/ },
    { entry: 'example.com:8080', why: /no port/ },
    { entry: '127.1', why: /four decimal parts/ },
    { entry: '1.2.3.4.5', why: /not a host name/ },
    { entry: 'a b.com', why: /not a host name/ },
    { entry: '-bad-.com', why: /not a host name/ },
    { entry: `${'a'.repeat(64)}.com`, why: /not a host name/ },
  ])('rejects $entry, naming it', ({ entry, why }) => {
    expect(() => parseAllowList([entry])).toThrow(why);
    expect(() => parseAllowList(['private', entry])).toThrow(
      `invalid --allow entry ${JSON.stringify(entry)}`,
    );
  });
});

describe('createDestinationGuard options', () => {
  it.each([
    { options: { connectTimeoutMs: 0 }, why: /connectTimeoutMs/ },
    { options: { connectTimeoutMs: CONNECT_TIMEOUT_MS, allowedPorts: [0] }, why: /allowedPorts/ },
    { options: { connectTimeoutMs: CONNECT_TIMEOUT_MS, allowedPorts: [65_536] }, why: /allowedPorts/ },
    { options: { connectTimeoutMs: CONNECT_TIMEOUT_MS, allow: ['10.0.0.0/40'] }, why: /"10\.0\.0\.0\/40"/ },
    {
      options: { connectTimeoutMs: CONNECT_TIMEOUT_MS, allowPrivate: true },
      why: /allowPrivate|unrecognized/i,
    },
  ])('rejects $options before any work', ({ options, why }) => {
    // Deliberately malformed input: the guard validates at runtime what the type cannot.
    expect(() =>
      createDestinationGuard(options as unknown as Parameters<typeof createDestinationGuard>[0]),
    ).toThrow(why);
  });
});

describe('checkUrl', () => {
  const guard = createDestinationGuard({ connectTimeoutMs: CONNECT_TIMEOUT_MS });

  it.each([
    { url: 'https://example.com/', verdict: null },
    { url: 'http://example.com:80/x', verdict: null },
    { url: 'http://93.184.215.14/', verdict: null },
    { url: 'http://[2606:2800:220:1:248:1893:25c8:1946]/', verdict: null },
    { url: 'http://example.com:8443/', verdict: /port 8443 is not allowed/ },
    {
      url: 'http://127.0.0.1/',
      verdict: /^127\.0\.0\.1 is loopback \(blocked by default; --allow-private opens it\)$/,
    },
    { url: 'http://localhost/', verdict: /localhost is a loopback name/ },
    { url: 'data:text/plain,hi', verdict: /scheme data: is not allowed/ },
    { url: 'http://u:p@example.com/', verdict: /credentials/ },
  ])('judges $url', ({ url, verdict }) => {
    const result = guard.checkUrl(new URL(url));
    if (verdict === null) expect(result).toBeNull();
    else {
      expect(result?.code).toBe('BLOCKED_DESTINATION');
      expect(result?.message).toMatch(verdict);
    }
  });

  it('answers repeated hosts from its cache, per scheme and port', () => {
    const first = guard.checkUrl(new URL('http://10.0.0.1/a'));
    expect(guard.checkUrl(new URL('http://10.0.0.1/b?x=1'))).toBe(first);
    expect(first).not.toBeNull();
    expect(Object.isFrozen(first)).toBe(true);
    expect(guard.checkUrl(new URL('http://example.com/'))).toBeNull();
    expect(guard.checkUrl(new URL('http://example.com:81/'))?.message).toMatch(/port 81/);
  });

  it('gives allowed hosts any port, and names resolve later when a CIDR could open a port', () => {
    const allowing = createDestinationGuard({
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      allow: ['api.internal', '10.0.0.0/8'],
    });
    expect(allowing.checkUrl(new URL('http://api.internal:9000/'))).toBeNull();
    expect(allowing.checkUrl(new URL('http://10.2.3.4:9000/'))).toBeNull();
    // Only DNS can tell whether other.example lands in 10.0.0.0/8: the connector judges its port.
    expect(allowing.checkUrl(new URL('http://other.example:9000/'))).toBeNull();
    expect(allowing.checkUrl(new URL('http://[::1]:9000/'))?.message).toMatch(/loopback/);
  });

  it('lets an IPv4-mapped allow entry open the IPv4 address it maps', () => {
    const mapped = createDestinationGuard({
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      allow: ['::ffff:10.0.0.1'],
    });
    expect(mapped.checkUrl(new URL('http://10.0.0.1/'))).toBeNull();
    expect(mapped.checkUrl(new URL('http://[::ffff:10.0.0.1]/'))).toBeNull();
    expect(mapped.checkUrl(new URL('http://10.0.0.2/'))).not.toBeNull();
  });

  it('honours allowedPorts from the deployment', () => {
    const ports = createDestinationGuard({ connectTimeoutMs: CONNECT_TIMEOUT_MS, allowedPorts: [8443] });
    expect(ports.checkUrl(new URL('https://example.com:8443/'))).toBeNull();
    expect(ports.checkUrl(new URL('https://example.com/'))?.message).toMatch(
      /port 443 is not allowed.*opens 8443/,
    );
  });
});

describe('connect', () => {
  it('refuses a forbidden literal synchronously, before any socket exists', () => {
    const guard = createDestinationGuard({ connectTimeoutMs: CONNECT_TIMEOUT_MS });
    const errors: unknown[] = [];
    guard.connect({ hostname: '169.254.169.254', protocol: 'http:', port: '' }, (...args) => {
      errors.push(args[0]);
    });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ itemCode: 'BLOCKED_DESTINATION', temporary: false });
  });
});
