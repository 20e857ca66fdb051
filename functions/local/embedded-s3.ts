// The embedded local S3 (fauxqs, in-process, files under a directory), listening on 127.0.0.1 only.
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
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
  /** Where unreadable files left by a killed process are moved; default `<dir>-quarantine`. */
  quarantineDir?: string;
  /** Where the embedded S3 says what it repaired; default stderr. */
  log?: (message: string) => void;
}

export interface EmbeddedS3 {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  port: number;
  dir: string;
  /** Files moved aside at start (paths inside the quarantine directory); empty when all was readable. */
  quarantined: readonly string[];
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
  const quarantined = repairStorage(dir, resolve(options.quarantineDir ?? `${dir}-quarantine`), {
    log: options.log ?? ((message) => process.stderr.write(`fanout: embedded S3: ${message}\n`)),
  });
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
    quarantined,
    client,
    createBucket: (name) => s3Store.createBucket(name),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * fauxqs writes each object as `<key>.data` then `<key>.meta.json` with plain writeFileSync, and loads
 * every meta file at start with JSON.parse: a process killed mid-write (a Ctrl-C'd or SIGKILLed
 * `fanout run`, whose embedded S3 lives in the same process) can leave an empty or cut file that makes
 * every later start throw. Before fauxqs loads, anything it could not load or would serve wrong is moved
 * into `quarantine` (same relative path, under a timestamped folder) and said on the log:
 * - an object whose meta does not parse, or whose data file is missing or not the size the meta says
 *   (the data of an overwrite was cut: serving it would hand out a truncated object);
 * - a data file with no meta (killed between the two writes: the PUT never succeeded);
 * - an unfinished multipart upload with any unreadable piece.
 * A bucket's own `.bucket.json` is rewritten from its folder name instead, so its objects survive.
 * Losing such an object is safe for fanout: the manifest is the commit record, and a lost manifest or
 * part makes the next run redo that work, never count it twice.
 */
export function repairStorage(
  dir: string,
  quarantine: string,
  options: { log: (message: string) => void },
): string[] {
  const moved: string[] = [];
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const moveAside = (path: string): void => {
    const target = join(quarantine, stamp, relative(dir, path));
    mkdirSync(dirname(target), { recursive: true });
    renameSync(path, target);
    moved.push(target);
  };
  const bucketsDir = join(dir, 'buckets');
  if (existsSync(bucketsDir)) {
    for (const bucket of readdirSync(bucketsDir, { withFileTypes: true })) {
      if (!bucket.isDirectory()) continue;
      const bucketDir = join(bucketsDir, bucket.name);
      repairBucketMeta(bucketDir, bucket.name, options.log);
      const objectsDir = join(bucketDir, 'objects');
      if (existsSync(objectsDir)) repairObjects(objectsDir, moveAside);
    }
  }
  const multipartDir = join(dir, '_multipart');
  if (existsSync(multipartDir)) {
    for (const upload of readdirSync(multipartDir, { withFileTypes: true })) {
      const uploadDir = join(multipartDir, upload.name);
      if (upload.isDirectory() && !isReadableUpload(uploadDir)) moveAside(uploadDir);
    }
  }
  if (moved.length > 0) {
    options.log(
      `moved ${moved.length} unreadable file(s) left by a killed process into ${join(quarantine, stamp)} ` +
        '(the objects they held are gone; a rerun redoes that work)',
    );
  }
  return moved;
}

function repairBucketMeta(bucketDir: string, name: string, log: (message: string) => void): void {
  const metaPath = join(bucketDir, '.bucket.json');
  if (!existsSync(metaPath) || parseJson(metaPath) !== undefined) return;
  writeFileSync(metaPath, JSON.stringify({ name, creationDate: new Date().toISOString() }));
  log(`rewrote the unreadable ${metaPath} of bucket ${name}`);
}

const META_SUFFIX = '.meta.json';
const DATA_SUFFIX = '.data';

function repairObjects(folder: string, moveAside: (path: string) => void): void {
  const entries = readdirSync(folder, { withFileTypes: true });
  const names = new Set(entries.map((entry) => entry.name));
  for (const entry of entries) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) {
      repairObjects(path, moveAside);
    } else if (entry.name.endsWith(META_SUFFIX)) {
      const dataName = `${entry.name.slice(0, -META_SUFFIX.length)}${DATA_SUFFIX}`;
      if (isReadableObject(path, names.has(dataName) ? join(folder, dataName) : null)) continue;
      moveAside(path);
      if (names.has(dataName)) moveAside(join(folder, dataName));
    } else if (entry.name.endsWith(DATA_SUFFIX)) {
      const metaName = `${entry.name.slice(0, -DATA_SUFFIX.length)}${META_SUFFIX}`;
      if (!names.has(metaName)) moveAside(path);
    }
  }
}

function isReadableObject(metaPath: string, dataPath: string | null): boolean {
  const meta = parseJson(metaPath) as { key?: unknown; contentLength?: unknown } | undefined;
  if (typeof meta?.key !== 'string' || dataPath === null) return false;
  return typeof meta.contentLength !== 'number' || statSync(dataPath).size === meta.contentLength;
}

function isReadableUpload(uploadDir: string): boolean {
  if (parseJson(join(uploadDir, '.upload.json')) === undefined) return false;
  const partsDir = join(uploadDir, 'parts');
  if (!existsSync(partsDir)) return true;
  for (const file of readdirSync(partsDir)) {
    if (!file.endsWith(META_SUFFIX)) continue;
    const part = parseJson(join(partsDir, file)) as { partNumber?: unknown } | undefined;
    if (
      typeof part?.partNumber !== 'number' ||
      !existsSync(join(partsDir, `${part.partNumber}${DATA_SUFFIX}`))
    )
      return false;
  }
  return true;
}

/** The parsed JSON object in `path`, or undefined when the file is unreadable, cut short or not an object. */
function parseJson(path: string): unknown {
  try {
    const value: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return typeof value === 'object' && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}
