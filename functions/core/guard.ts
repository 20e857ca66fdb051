// PLACEHOLDER owned by the guard work: the destination policy, enforced in the undici connector.
// Until it lands this passes every destination through; the real one denies private ranges by default.
import { buildConnector } from 'undici';
import type { ItemError } from './errors.ts';
import type { LookupAll } from './types.ts';

export interface DestinationGuardOptions {
  /** Entries of `--allow`: hosts, CIDRs, or "private". */
  allow?: readonly string[];
  /** Ports the default policy opens; allowed hosts and CIDRs match any port. */
  allowedPorts?: readonly number[];
  lookup?: LookupAll;
  connectTimeoutMs: number;
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

export function createDestinationGuard(options: DestinationGuardOptions): DestinationGuard {
  return { checkUrl: () => null, connect: buildConnector({ timeout: options.connectTimeoutMs }) };
}
