// The destination policy: which schemes, ports and addresses fanout may reach, judged on each URL and enforced in the connector.
//
// Two layers, one policy. `checkUrl` judges what a URL shows (scheme, credentials, port, a literal address, a
// localhost name) per request, from a cache, so the engine fails an item before any connection. `connect` is
// undici's connector, run per NEW connection: it resolves a name once, checks EVERY address (one bad answer
// rejects the name: fail closed), then connects to the checked address itself, so a second resolution
// (DNS rebinding) can never change where the socket goes. Never put undici's `interceptors.dns()` in front of
// it: that hands the connector an address it then trusts as a literal the job never wrote.
import { promises as dnsPromises } from 'node:dns';
import { isIP, isIPv4 } from 'node:net';
import { domainToASCII } from 'node:url';
import ipaddr from 'ipaddr.js';
import type { buildConnector } from 'undici';
import connectorFactory from 'undici/lib/core/connect.js';
import undiciErrors from 'undici/lib/core/errors.js';
import * as z from 'zod';
import type { ItemError } from './errors.ts';
import type { LookupAll } from './types.ts';

export interface DestinationGuardOptions {
  /** Entries of `--allow`: hosts, IPs, CIDRs, or "private". */
  allow?: readonly string[];
  /** Ports the default policy opens; allowed hosts and CIDRs match any port. */
  allowedPorts?: readonly number[];
  lookup?: LookupAll;
  connectTimeoutMs: number;
}

/**
 * Test seam, not configuration: the connector the guard hands a checked destination to. Tests route it to a
 * loopback recorder so that a vector naming 10.0.0.1 or 169.254.169.254 never sends a packet off the machine.
 */
export interface DestinationGuardSeams {
  connector?: buildConnector.connector;
}

export interface DestinationGuard {
  /** Judges a URL before any connection: scheme, port, literal addresses, localhost names. */
  checkUrl(url: URL): ItemError | null;
  /**
   * undici's `connect` option: resolves, checks every address, connects to the checked one.
   * Fails with an error whose `itemCode` is 'BLOCKED_DESTINATION' or 'DNS' (`temporary` for EAI_AGAIN).
   */
  connect: buildConnector.connector;
}

/** What the connector fails with; the engine records `itemCode` as the item's error code. */
export class DestinationError extends Error {
  readonly itemCode: 'BLOCKED_DESTINATION' | 'DNS';
  /** A DNS failure that may pass (EAI_AGAIN): worth a retry. */
  readonly temporary: boolean;

  constructor(itemCode: 'BLOCKED_DESTINATION' | 'DNS', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DestinationError';
    this.itemCode = itemCode;
    this.temporary = itemCode === 'DNS' && hasCode(options?.cause, 'EAI_AGAIN');
  }
}

/** A parsed `--allow` list: what the operator opened beyond the default policy. */
export interface AllowList {
  /** Exact host names, lower-case ASCII, without a trailing dot. */
  readonly hosts: ReadonlySet<string>;
  readonly v4: ReadonlyArray<readonly [ipaddr.IPv4, number]>;
  readonly v6: ReadonlyArray<readonly [ipaddr.IPv6, number]>;
  /** "private": loopback, RFC 1918, CGNAT and ULA on any port (never link-local or cloud metadata). */
  readonly private: boolean;
}

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** Why an address is not public unicast; `privateOpens` marks the ranges "private" opens. */
interface Rule {
  readonly label: string;
  readonly privateOpens: boolean;
}

const DEFAULT_ALLOWED_PORTS: readonly number[] = [80, 443];
/** Distinct origins a job reaches are few; the bound only stops a hostile item list from growing it. */
const URL_VERDICT_CACHE_ENTRIES = 4_096;
/** Errors on which the next checked address is worth trying (dual-stack hosts without IPv6 egress). */
const NEXT_ADDRESS_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'EADDRNOTAVAIL',
  'EAFNOSUPPORT',
]);

const OPENED_BY_PRIVATE = 'blocked by default; --allow-private opens it';
const OPENED_EXPLICITLY = 'blocked by default; only an explicit --allow of the address or its CIDR opens it';

function rule(label: string, privateOpens = false): Rule {
  return { label, privateOpens };
}

const LOOPBACK = rule('loopback', true);
const LINK_LOCAL_V4 = rule('link-local 169.254.0.0/16, where cloud metadata lives');
/** ipaddr.js range names → rules. A name missing here (a future ipaddr.js range) is blocked: fail closed. */
const V4_RULES: Readonly<Record<string, Rule | null>> = {
  unicast: null,
  // Globally routed anycast services: public unicast as far as a client can tell.
  as112: null,
  amt: null,
  loopback: LOOPBACK,
  private: rule('private, RFC 1918', true),
  carrierGradeNat: rule('shared address space, CGNAT 100.64.0.0/10', true),
  linkLocal: LINK_LOCAL_V4,
  unspecified: rule('unspecified 0.0.0.0/8, which reaches this host'),
  broadcast: rule('broadcast'),
  multicast: rule('multicast 224.0.0.0/4'),
  reserved: rule('reserved'),
};
const V6_RULES: Readonly<Record<string, Rule | null>> = {
  unicast: null,
  amt: null,
  as112v6: null,
  loopback: LOOPBACK,
  uniqueLocal: rule('unique local, ULA fc00::/7', true),
  linkLocal: rule('link-local fe80::/10'),
  unspecified: rule('unspecified ::, which reaches this host'),
  multicast: rule('multicast ff00::/8'),
  rfc6145: rule('IPv4-translated ::ffff:0:0:0/96'),
  rfc6052: rule('NAT64 64:ff9b::/96 or 64:ff9b:1::/48, which can embed any IPv4 address'),
  // Deprecated transition tunnels that embed an IPv4 address: no public service needs them, and a host with a
  // tunnel interface would reach the embedded (possibly private) address. Blocking beats unwrapping.
  '6to4': rule('6to4 2002::/16, a deprecated tunnel embedding an IPv4 address'),
  teredo: rule('Teredo 2001::/32, a tunnel embedding an IPv4 address'),
  benchmarking: rule('benchmarking 2001:2::/48'),
  reserved: rule('reserved or documentation'),
  deprecatedSiteLocal: rule('site-local fec0::/10'),
};

/** Explicit CIDRs checked before the range names, where those names are too coarse or hide a hazard. */
const V4_EXPLICIT: ReadonlyArray<readonly [ipaddr.IPv4, number, Rule]> = [
  // Alibaba Cloud's metadata service sits inside CGNAT space, which "private" opens: carve it out.
  [ipaddr.IPv4.parse('100.100.100.200'), 32, rule('the Alibaba Cloud metadata service')],
  [ipaddr.IPv4.parse('198.18.0.0'), 15, rule('benchmarking 198.18.0.0/15')],
  [ipaddr.IPv4.parse('192.0.2.0'), 24, rule('documentation 192.0.2.0/24')],
  [ipaddr.IPv4.parse('198.51.100.0'), 24, rule('documentation 198.51.100.0/24')],
  [ipaddr.IPv4.parse('203.0.113.0'), 24, rule('documentation 203.0.113.0/24')],
  [ipaddr.IPv4.parse('192.0.0.0'), 24, rule('IETF protocol assignments 192.0.0.0/24')],
  [ipaddr.IPv4.parse('255.255.255.255'), 32, rule('broadcast')],
  [ipaddr.IPv4.parse('240.0.0.0'), 4, rule('reserved 240.0.0.0/4')],
];
const V6_EXPLICIT: ReadonlyArray<readonly [ipaddr.IPv6, number, Rule]> = [
  // AWS's IPv6 instance metadata lives inside ULA space, which "private" opens: carve it out.
  [ipaddr.IPv6.parse('fd00:ec2::254'), 128, rule('the AWS IPv6 instance metadata service')],
  [ipaddr.IPv6.parse('2001:db8::'), 32, rule('documentation 2001:db8::/32')],
  [ipaddr.IPv6.parse('3fff::'), 20, rule('documentation 3fff::/20')],
];
/** After the named ranges: ::/96 once carried IPv4-compatible addresses; outside 2000::/3 nothing is public. */
const V4_COMPATIBLE: readonly [ipaddr.IPv6, number] = [ipaddr.IPv6.parse('::'), 96];
const GLOBAL_UNICAST: readonly [ipaddr.IPv6, number] = [ipaddr.IPv6.parse('2000::'), 3];

/** The rule that forbids `address`, or null when it is public unicast. IPv4-mapped addresses are unwrapped first. */
function classify(address: Address): Rule | null {
  if (address.kind() === 'ipv4') {
    const v4 = address as ipaddr.IPv4;
    for (const [base, bits, explicit] of V4_EXPLICIT) if (v4.match(base, bits)) return explicit;
    const name = v4.range();
    const named = V4_RULES[name];
    return named === undefined ? rule(`special-purpose, ipaddr.js range ${name}`) : named;
  }
  const v6 = address as ipaddr.IPv6;
  for (const [base, bits, explicit] of V6_EXPLICIT) if (v6.match(base, bits)) return explicit;
  const name = v6.range();
  const named = V6_RULES[name];
  if (named === undefined) return rule(`special-purpose, ipaddr.js range ${name}`);
  if (named !== null) return named;
  if (v6.match(V4_COMPATIBLE[0], V4_COMPATIBLE[1])) return rule('IPv4-compatible ::/96');
  if (!v6.match(GLOBAL_UNICAST[0], GLOBAL_UNICAST[1])) return rule('not global unicast, outside 2000::/3');
  return null;
}

/** An IPv4-mapped IPv6 address is the IPv4 host it maps to (a dual-stack socket reaches it over IPv4). */
function unwrap(address: Address): Address {
  if (address.kind() === 'ipv6') {
    const v6 = address as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return v6.toIPv4Address();
  }
  return address;
}

/** Parses a textual IP as the connector or a URL gives it (no brackets); null when it is not one. */
function parseAddress(text: string): Address | null {
  const family = isIP(text);
  if (family === 4) return ipaddr.IPv4.parse(text);
  if (family === 6) return ipaddr.IPv6.parse(text);
  return null;
}

function listedIn(address: Address, allow: AllowList): boolean {
  if (address.kind() === 'ipv4') {
    const v4 = address as ipaddr.IPv4;
    for (const [base, bits] of allow.v4) if (v4.match(base, bits)) return true;
    return false;
  }
  const v6 = address as ipaddr.IPv6;
  for (const [base, bits] of allow.v6) if (v6.match(base, bits)) return true;
  return false;
}

function isLocalhostName(name: string): boolean {
  return name === 'localhost' || name.endsWith('.localhost');
}

function withoutTrailingDot(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

function effectivePort(protocol: string, port: string): number {
  if (port !== '') return Number(port);
  return protocol === 'https:' ? 443 : 80;
}

function hasCode(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

function codeOf(error: unknown): string {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : 'unknown error';
}

const HOST_LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
/** WHATWG parses a host whose last label is a number as IPv4, so such a name can never match a URL's host. */
const NUMERIC_LABEL = /^(?:0x[0-9a-f]*|[0-9]+)$/;
const MAX_HOST_LENGTH = 253;

function badEntry(entry: string, why: string): Error {
  return new Error(`invalid --allow entry ${JSON.stringify(entry)}: ${why}`);
}

/**
 * Parses `--allow`/`FANOUT_ALLOW` entries (already comma-split by the caller): a host name (exact,
 * case-insensitive, trailing dot ignored), an IP, a CIDR, or "private". Throws naming the first bad entry.
 */
export function parseAllowList(entries: readonly string[]): AllowList {
  const hosts = new Set<string>();
  const v4: Array<readonly [ipaddr.IPv4, number]> = [];
  const v6: Array<readonly [ipaddr.IPv6, number]> = [];
  let openPrivate = false;
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === '') throw badEntry(raw, 'empty (a stray comma?)');
    if (entry.toLowerCase() === 'private') {
      openPrivate = true;
      continue;
    }
    if (entry.includes('://')) throw badEntry(raw, 'a host, IP or CIDR, not a URL');
    const bare = entry.startsWith('[') && entry.endsWith(']') ? entry.slice(1, -1) : entry;
    if (bare.includes('/')) {
      if (!ipaddr.isValidCIDR(bare) || (bare.includes('.') && !bare.includes(':') && !isFourPartCidr(bare))) {
        throw badEntry(raw, 'not a valid CIDR (e.g. 10.0.0.0/8, fd00::/8)');
      }
      const [base, bits] = ipaddr.parseCIDR(bare);
      if (base.kind() === 'ipv4') v4.push([base as ipaddr.IPv4, bits]);
      else if ((base as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
        // Addresses are judged as IPv4 once unmapped: a mapped entry must be too, or it never matches.
        v4.push([(base as ipaddr.IPv6).toIPv4Address(), bits - 96]);
      } else v6.push([base as ipaddr.IPv6, bits]);
      continue;
    }
    if (isIP(bare) === 6) {
      const address = ipaddr.IPv6.parse(bare);
      if (address.isIPv4MappedAddress()) v4.push([address.toIPv4Address(), 32]);
      else v6.push([address, 128]);
      continue;
    }
    if (isIPv4(bare)) {
      v4.push([ipaddr.IPv4.parse(bare), 32]);
      continue;
    }
    if (entry.includes(':')) throw badEntry(raw, 'no port: an allowed host or CIDR matches any port');
    if (entry.includes('*')) throw badEntry(raw, 'no wildcards: list each host name exactly');
    // The same IDNA mapping a URL's host gets, so "Bücher.de" matches the host of http://bücher.de/.
    const name = withoutTrailingDot(domainToASCII(entry));
    const labels = name.split('.');
    if (
      name === '' ||
      name.length > MAX_HOST_LENGTH ||
      !labels.every((label) => HOST_LABEL.test(label)) ||
      NUMERIC_LABEL.test(labels[labels.length - 1] ?? '')
    ) {
      throw badEntry(raw, 'not a host name, an IP (four decimal parts for IPv4), a CIDR or "private"');
    }
    hosts.add(name);
  }
  return { hosts, v4, v6, private: openPrivate };
}

function isFourPartCidr(cidr: string): boolean {
  return ipaddr.IPv4.isValidCIDRFourPartDecimal(cidr);
}

const GuardOptionsSchema = z
  .object({
    allow: z.array(z.string()).readonly().optional(),
    allowedPorts: z.array(z.number().int().min(1).max(65_535)).readonly().optional(),
    lookup: z.custom<LookupAll>((value) => typeof value === 'function', 'must be a function').optional(),
    connectTimeoutMs: z.number().int().min(1),
  })
  .strict();

function resolveGuardOptions(options: DestinationGuardOptions): z.infer<typeof GuardOptionsSchema> {
  const parsed = GuardOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join('.') || '(options)';
    throw new Error(`invalid destination guard option ${path}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

const systemLookup: LookupAll = async (hostname) => {
  const answers = await dnsPromises.lookup(hostname, { all: true });
  return answers.map((answer) => ({ address: answer.address, family: answer.family === 6 ? 6 : 4 }));
};

function blocked(message: string): ItemError {
  return Object.freeze({ code: 'BLOCKED_DESTINATION', message });
}

export function createDestinationGuard(
  options: DestinationGuardOptions,
  seams: DestinationGuardSeams = {},
): DestinationGuard {
  const resolved = resolveGuardOptions(options);
  const allow = parseAllowList(resolved.allow ?? []);
  const allowedPorts: ReadonlySet<number> = new Set(resolved.allowedPorts ?? DEFAULT_ALLOWED_PORTS);
  const openPorts = [...allowedPorts].join(' and ');
  const lookup = resolved.lookup ?? systemLookup;
  const connectTimeoutMs = resolved.connectTimeoutMs;
  const connectChecked = seams.connector ?? connectorFactory({ timeout: connectTimeoutMs });
  // Ranges can open a port only once a name has resolved; without any, a name's port is judged on the URL.
  const hasRanges = allow.private || allow.v4.length > 0 || allow.v6.length > 0;

  const portMessage = (port: number): string =>
    `port ${port} is not allowed (the default policy opens ${openPorts}; an allowed host or CIDR opens any port)`;

  /** Why `address` may not be reached on `port`, or null; `name` is the host it was resolved from, if any. */
  const judgeAddress = (address: Address, port: number, name: string | null): string | null => {
    const target = unwrap(address);
    if (listedIn(target, allow)) return null;
    const reason = classify(target);
    if (reason !== null) {
      if (reason.privateOpens && allow.private) return null;
      const how = reason.privateOpens ? OPENED_BY_PRIVATE : OPENED_EXPLICITLY;
      const shown =
        target === address ? address.toString() : `${address.toString()} (IPv4-mapped ${target.toString()})`;
      const what = name === null ? `${shown} is` : `${name} resolves to ${shown}, which is`;
      return `${what} ${reason.label} (${how})`;
    }
    return allowedPorts.has(port) ? null : portMessage(port);
  };

  /** Why a localhost name is refused before any lookup, or null when the operator opened it. */
  const judgeName = (name: string): string | null => {
    if (allow.hosts.has(name) || !isLocalhostName(name) || allow.private) return null;
    return `${name} is a loopback name (refused by name before any lookup; --allow-private opens it)`;
  };

  const judgeUrlHost = (hostname: string, port: number): ItemError | null => {
    const literal = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    const address = parseAddress(literal);
    if (address !== null) {
      const reason = judgeAddress(address, port, null);
      return reason === null ? null : blocked(reason);
    }
    const name = withoutTrailingDot(hostname);
    if (allow.hosts.has(name)) return null;
    const nameReason = judgeName(name);
    if (nameReason !== null) return blocked(nameReason);
    if (!allowedPorts.has(port) && !hasRanges) return blocked(portMessage(port));
    return null;
  };

  // Verdicts by `host` (hostname and port), one map per scheme: a job hits few origins many times.
  const httpVerdicts = new Map<string, ItemError | null>();
  const httpsVerdicts = new Map<string, ItemError | null>();

  const checkUrl = (url: URL): ItemError | null => {
    const protocol = url.protocol;
    if (protocol !== 'http:' && protocol !== 'https:') {
      return blocked(`scheme ${protocol} is not allowed (only http: and https:)`);
    }
    if (url.username !== '' || url.password !== '') {
      return blocked('URLs with credentials are not allowed');
    }
    const verdicts = protocol === 'https:' ? httpsVerdicts : httpVerdicts;
    const host = url.host;
    const cached = verdicts.get(host);
    if (cached !== undefined) return cached;
    const verdict = judgeUrlHost(url.hostname, effectivePort(protocol, url.port));
    if (verdicts.size >= URL_VERDICT_CACHE_ENTRIES) verdicts.clear();
    verdicts.set(host, verdict);
    return verdict;
  };

  const connect: buildConnector.connector = (connectOptions, callback) => {
    const { protocol, hostname } = connectOptions;
    if (protocol !== 'http:' && protocol !== 'https:') {
      callback(new DestinationError('BLOCKED_DESTINATION', `scheme ${protocol} is not allowed`), null);
      return;
    }
    const port = effectivePort(protocol, connectOptions.port);
    // undici strips an IPv6 literal's brackets; Node never calls lookup for a literal, so judge it here.
    const literal = parseAddress(hostname);
    if (literal !== null) {
      const reason = judgeAddress(literal, port, null);
      if (reason !== null) {
        callback(new DestinationError('BLOCKED_DESTINATION', reason), null);
        return;
      }
      // Returning the socket lets undici cancel the attempt when no request needs it any more.
      return connectChecked(connectOptions, callback);
    }
    const name = withoutTrailingDot(hostname.toLowerCase());
    const nameReason = judgeName(name);
    if (nameReason !== null) {
      callback(new DestinationError('BLOCKED_DESTINATION', nameReason), null);
      return;
    }
    const hostAllowed = allow.hosts.has(name);
    resolveWithin(lookup, hostname, connectTimeoutMs).then(
      (answers) => {
        if (answers.length === 0) {
          callback(new DestinationError('DNS', `${hostname} resolved to no address`), null);
          return;
        }
        const addresses: string[] = [];
        for (const answer of answers) {
          const address = parseAddress(answer.address);
          if (address === null) {
            callback(new DestinationError('DNS', `${hostname} resolved to a non-address`), null);
            return;
          }
          // An allowed host opens whatever it resolves to: the operator named it.
          const reason = hostAllowed ? null : judgeAddress(address, port, hostname);
          if (reason !== null) {
            callback(new DestinationError('BLOCKED_DESTINATION', reason), null);
            return;
          }
          addresses.push(answer.address);
        }
        connectToChecked(connectOptions, name, addresses, callback);
      },
      (error: unknown) => {
        const passThrough =
          error instanceof DestinationError || error instanceof undiciErrors.ConnectTimeoutError;
        callback(passThrough ? error : dnsFailure(hostname, error), null);
      },
    );
  };

  /** Connects to the checked addresses in order, moving on only when one is unreachable. */
  const connectToChecked = (
    connectOptions: buildConnector.Options,
    name: string,
    addresses: readonly string[],
    callback: buildConnector.Callback,
  ): void => {
    const attempt = (index: number): void => {
      const address = addresses[index] as string;
      const { servername, ...rest } = connectOptions;
      // TLS verifies the certificate and sends SNI for the name, while the socket goes to the checked address.
      const checked: buildConnector.Options =
        rest.protocol === 'https:'
          ? { ...rest, hostname: address, servername: servername || name }
          : { ...rest, hostname: address };
      try {
        connectChecked(checked, (error, socket) => {
          if (error === null) {
            callback(null, socket);
          } else if (index + 1 < addresses.length && NEXT_ADDRESS_CODES.has(codeOf(error))) {
            attempt(index + 1);
          } else {
            callback(error, null);
          }
        });
      } catch (error) {
        callback(error instanceof Error ? error : new Error(String(error)), null);
      }
    };
    attempt(0);
  };

  return { checkUrl, connect };
}

function dnsFailure(hostname: string, error: unknown): DestinationError {
  const code = codeOf(error);
  return new DestinationError('DNS', `${hostname} did not resolve (${code})`, { cause: error });
}

/** A lookup bounded by the connect timeout: getaddrinfo cannot be cancelled, so its late answer is dropped. */
function resolveWithin(
  lookup: LookupAll,
  hostname: string,
  timeoutMs: number,
): Promise<Array<{ address: string; family: 4 | 6 }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(
        new undiciErrors.ConnectTimeoutError(`DNS lookup of ${hostname} timed out after ${timeoutMs} ms`),
      );
    }, timeoutMs);
    timer.unref();
    lookup(hostname).then(
      (answers) => {
        clearTimeout(timer);
        resolve(answers);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
