// The environment a handler reads at cold start, set in this process for `invoke` and `serve`.
import { type OpenStore, openStore, type StoreFlags } from './store.ts';

export interface HandlerEnvFlags extends StoreFlags {
  allow?: string[];
  allowPrivate?: boolean;
}

/**
 * Opens the store the same way `run` does (embedded S3 when nothing is configured), then sets the stack's
 * variables (FANOUT_BUCKET, FANOUT_PREFIX, FANOUT_ALLOW) so the handlers' config validates as in Lambda.
 */
export async function prepareHandlerEnv(
  flags: HandlerEnvFlags,
  say: (line: string) => void,
): Promise<OpenStore> {
  const opened = await openStore(flags, process.env, say);
  Object.assign(process.env, opened.env);
  if (flags.prefix !== undefined) process.env.FANOUT_PREFIX = flags.prefix;
  const allow = [...(flags.allow ?? []), ...(flags.allowPrivate ? ['private'] : [])];
  if (allow.length > 0) process.env.FANOUT_ALLOW = allow.join(',');
  return opened;
}
