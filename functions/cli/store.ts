// Where a CLI command reads and writes: the configured S3 bucket, or the embedded local S3 under .fanout/.
import { join } from 'node:path';
import type { StoreConfig } from '../core/index.ts';
import { CliError } from './errors.ts';

/** The bucket the embedded S3 holds; `fanout show` finds what `fanout run` wrote there. */
export const EMBEDDED_BUCKET = 'fanout';
/** Any credentials do for the embedded S3, which checks none (it listens on 127.0.0.1 only). */
const EMBEDDED_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'fanout-local', AWS_SECRET_ACCESS_KEY: 'fanout-local' };

export interface StoreFlags {
  bucket?: string;
  prefix?: string;
  gzip?: boolean;
}

export interface OpenStore {
  store: StoreConfig;
  /** `s3://bucket/prefix`, for messages. */
  location: string;
  /** Set when the embedded S3 was started: its endpoint and folder. */
  embedded?: { endpoint: string; dir: string };
  /** The standard AWS variables that reach this store, for a handler run in this process. */
  env: Record<string, string>;
  close(): Promise<void>;
}

/** `.fanout` in the working directory unless FANOUT_LOCAL_DIR says otherwise (tests use a temporary one). */
export function localDir(env: NodeJS.ProcessEnv): string {
  return env.FANOUT_LOCAL_DIR?.trim() || '.fanout';
}

/**
 * The bucket from --bucket (or FANOUT_BUCKET) and the standard AWS settings. With neither a bucket nor an
 * endpoint, the embedded S3 starts under `.fanout/s3` and `say` tells the user, as DESIGN.md promises.
 */
export async function openStore(
  flags: StoreFlags,
  env: NodeJS.ProcessEnv,
  say: (line: string) => void,
): Promise<OpenStore> {
  const { s3SettingsFrom, createS3Client } = await import('../adapters/s3-client.ts');
  const settings = s3SettingsFrom(env);
  const prefix = flags.prefix;
  const base = { ...(prefix === undefined ? {} : { prefix }), ...(flags.gzip ? { gzip: true } : {}) };
  const shownPrefix = prefix ?? 'jobs';

  if (flags.bucket === undefined && settings.endpoint === undefined) {
    const { startEmbeddedS3 } = await import('../local/embedded-s3.ts');
    const dir = join(localDir(env), 's3');
    const s3 = await startEmbeddedS3({ dir, buckets: [EMBEDDED_BUCKET] });
    say(
      `no bucket or S3 endpoint configured: using the embedded local S3 at ${s3.endpoint} ` +
        `(bucket "${EMBEDDED_BUCKET}", files in ${dir}/); set --bucket or FANOUT_BUCKET for a real one`,
    );
    return {
      store: { client: s3.client, bucket: EMBEDDED_BUCKET, ...base },
      location: `s3://${EMBEDDED_BUCKET}/${shownPrefix}`,
      embedded: { endpoint: s3.endpoint, dir },
      env: {
        AWS_ENDPOINT_URL_S3: s3.endpoint,
        AWS_REGION: 'us-east-1',
        FANOUT_BUCKET: EMBEDDED_BUCKET,
        ...EMBEDDED_CREDENTIALS,
      },
      close: () => s3.stop(),
    };
  }
  if (flags.bucket === undefined) {
    throw new CliError(
      `no bucket: an S3 endpoint is set (${settings.endpoint}) but neither --bucket nor FANOUT_BUCKET is`,
    );
  }
  const client = createS3Client(env);
  const passOn: Record<string, string> = { FANOUT_BUCKET: flags.bucket };
  if (settings.endpoint !== undefined) passOn.AWS_ENDPOINT_URL_S3 = settings.endpoint;
  if (settings.region !== undefined) passOn.AWS_REGION = settings.region;
  return {
    store: { client, bucket: flags.bucket, ...base },
    location: `s3://${flags.bucket}/${shownPrefix}`,
    env: passOn,
    close: async () => client.destroy(),
  };
}
