// The embedded local S3 (fauxqs, in-process, files under a directory), listening on 127.0.0.1 only.
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { buildApp } from 'fauxqs';

export const DEFAULT_EMBEDDED_S3_DIR = '.fanout/s3';
/** Any credentials do: the embedded S3 checks none (which is why it must never leave loopback). */
const EMBEDDED_CREDENTIALS = { accessKeyId: 'fanout-local', secretAccessKey: 'fanout-local' };
const EMBEDDED_REGION = 'us-east-1';
const LOOPBACK = '127.0.0.1';

export interface EmbeddedS3Options {
  /** Where objects live as plain files; default `./.fanout/s3`. */
  dir?: string;
  /** 0 (default) lets the OS pick a free port. */
  port?: number;
  /** Buckets to create if missing. */
  buckets?: readonly string[];
  /** Extra client settings (tests add middleware this way). */
  client?: Partial<S3ClientConfig>;
}

export interface EmbeddedS3 {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  port: number;
  dir: string;
  client: S3Client;
  createBucket(name: string): void;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

// fauxqs's internals, typed as far as we use them.
interface FauxqsS3Store {
  persistence?: unknown;
  createBucket(name: string): void;
}
interface FileS3PersistenceInstance {
  loadS3(store: FauxqsS3Store): void;
}
type S3StoreModule = { S3Store: new () => FauxqsS3Store };
type FileS3PersistenceModule = { FileS3Persistence: new (dir: string) => FileS3PersistenceInstance };

/**
 * Starts fauxqs in this process. `startFauxqs()` always listens on 0.0.0.0 (every interface), and the
 * emulator has no authentication, so we assemble the same server from `buildApp()` plus its file-backed
 * S3 store and listen on 127.0.0.1 ourselves. The store classes are not in the package's exports map,
 * so they are imported by file URL; test/integration/store-embedded.test.ts proves both the binding and
 * that this still works with the installed fauxqs.
 */
export async function startEmbeddedS3(options: EmbeddedS3Options = {}): Promise<EmbeddedS3> {
  const dir = resolve(options.dir ?? DEFAULT_EMBEDDED_S3_DIR);
  mkdirSync(dir, { recursive: true });
  const distUrl = import.meta.resolve('fauxqs');
  const { S3Store } = (await import(new URL('./s3/s3Store.js', distUrl).href)) as S3StoreModule;
  const { FileS3Persistence } = (await import(
    new URL('./s3/fileS3Persistence.js', distUrl).href
  )) as FileS3PersistenceModule;

  const s3Store = new S3Store();
  const persistence = new FileS3Persistence(dir);
  // Load before wiring persistence in, as startFauxqs does: loading must not write back.
  persistence.loadS3(s3Store);
  s3Store.persistence = persistence;
  // buildApp creates in-memory SQS/SNS stores for the keys we leave out; we serve S3 only.
  const stores = { s3Store } as unknown as NonNullable<NonNullable<Parameters<typeof buildApp>[0]>['stores']>;
  const app = buildApp({ logger: false, stores });
  await app.listen({ port: options.port ?? 0, host: LOOPBACK });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('embedded S3: no TCP address');
  const endpoint = `http://${LOOPBACK}:${address.port}`;

  const client = new S3Client({
    endpoint,
    region: EMBEDDED_REGION,
    forcePathStyle: true,
    credentials: EMBEDDED_CREDENTIALS,
    retryMode: 'standard',
    ...options.client,
  });
  try {
    for (const bucket of options.buckets ?? []) s3Store.createBucket(bucket);
  } catch (error) {
    // A bad bucket name must not leave the listener behind.
    client.destroy();
    await app.close();
    throw error;
  }

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      client.destroy();
      await app.close();
    })();
    return stopped;
  };
  return {
    endpoint,
    port: address.port,
    dir,
    client,
    createBucket: (name) => s3Store.createBucket(name),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
