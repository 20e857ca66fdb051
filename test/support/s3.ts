// Test S3: the embedded fauxqs on 127.0.0.1 in a fresh temporary directory, with one bucket and helpers.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GetObjectCommand,
  ListObjectsV2Command,
  type S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import type { Manifest } from '../../functions/core/index.ts';
import { startEmbeddedS3 } from '../../functions/local/embedded-s3.ts';

export interface TestS3 {
  client: S3Client;
  bucket: string;
  endpoint: string;
  /** The storage directory (removed by stop()). */
  dir: string;
  /** Every key under `prefix` (default: the whole bucket), sorted. */
  listKeys(prefix?: string): Promise<string[]>;
  /** An object's body as text (gunzipped when the key ends in .gz). */
  getText(key: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startTestS3(
  options: { bucket?: string; client?: Partial<S3ClientConfig> } = {},
): Promise<TestS3> {
  const bucket = options.bucket ?? 'fanout-test';
  const dir = mkdtempSync(join(tmpdir(), 'fanout-s3-'));
  const s3 = await startEmbeddedS3({
    dir,
    buckets: [bucket],
    ...(options.client ? { client: options.client } : {}),
  });
  const client = s3.client;
  return {
    client,
    bucket,
    endpoint: s3.endpoint,
    dir,
    listKeys: (prefix) => listAllKeys(client, bucket, prefix),
    getText: (key) => getObjectText(client, bucket, key),
    stop: async () => {
      await s3.stop();
      rmSync(dir, { recursive: true, force: true });
      rmSync(`${dir}-quarantine`, { recursive: true, force: true });
    },
  };
}

export async function listAllKeys(client: S3Client, bucket: string, prefix?: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        ...(prefix ? { Prefix: prefix } : {}),
        ...(token ? { ContinuationToken: token } : {}),
      }),
    );
    for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

export async function getObjectText(client: S3Client, bucket: string, key: string): Promise<string> {
  const reply = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = await reply.Body?.transformToByteArray();
  if (!bytes) return '';
  if (key.endsWith('.gz')) {
    const { gunzipSync } = await import('node:zlib');
    return gunzipSync(bytes).toString('utf8');
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The keys a manifest commits: its results and errors parts, and pending.jsonl when it has one. */
export function listedKeys(manifest: Pick<Manifest, 'results' | 'errors' | 'pending'>): string[] {
  return [...manifest.results, ...manifest.errors, ...(manifest.pending ? [manifest.pending] : [])];
}

/** Every id in the JSON lines of these objects, in order, repeats kept: what exactly-once checks read. */
export async function idsInParts(
  getText: (key: string) => Promise<string>,
  keys: readonly string[],
): Promise<string[]> {
  const ids: string[] = [];
  for (const key of keys) {
    for (const line of (await getText(key)).split('\n')) {
      if (line.trim() !== '') ids.push((JSON.parse(line) as { id: string }).id);
    }
  }
  return ids;
}

/** How often each id appears. */
export function countIds(ids: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}
