// The handlers' own objects beside a job (accepted.json claims, continuation claims) and reading parts back.
import { gunzipSync } from 'node:zlib';
import {
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import type { StoreConfig } from '../core/index.ts';

/** What POST /jobs records before starting a job: the job itself, so the runner needs no big payload. */
export interface AcceptedJob {
  jobId: string;
  acceptedAt: string;
  /** SHA-256 of the request body: the same Idempotency-Key with another body is a conflict. */
  requestSha256: string;
  job: Record<string, unknown>;
}

export function jobKey(store: StoreConfig, jobId: string, name: string): string {
  return `${store.prefix ?? 'jobs'}/${jobId}/${name}`;
}

/**
 * Creates `key` only if it does not exist. S3 makes `IfNoneMatch: '*'` atomic; the HEAD first is for
 * stores that ignore the condition (the embedded fauxqs does), where it still stops a sequential repeat.
 */
export async function claimObject(
  store: StoreConfig,
  key: string,
  body: unknown,
  signal?: AbortSignal,
): Promise<'claimed' | 'exists'> {
  if (await objectExists(store, key, signal)) return 'exists';
  try {
    await store.client.send(
      new PutObjectCommand({
        Bucket: store.bucket,
        Key: key,
        Body: JSON.stringify(body),
        ContentType: 'application/json',
        IfNoneMatch: '*',
      }),
      signal ? { abortSignal: signal } : {},
    );
    return 'claimed';
  } catch (error) {
    // 412: someone created it first; 409: a concurrent conditional write is still in progress.
    if (statusOf(error) === 412 || statusOf(error) === 409) return 'exists';
    throw error;
  }
}

export async function readJsonObject<T>(
  store: StoreConfig,
  key: string,
  signal?: AbortSignal,
): Promise<T | null> {
  const text = await readText(store.client, store.bucket, key, signal);
  return text === null ? null : (JSON.parse(text) as T);
}

/** Up to `limit` JSONL lines from the listed parts, in order; `truncated` when more were left. */
export async function readPartLines(
  store: StoreConfig,
  keys: readonly string[],
  limit: number,
  signal?: AbortSignal,
): Promise<{ lines: unknown[]; truncated: boolean }> {
  const lines: unknown[] = [];
  for (const key of keys) {
    const text = (await readText(store.client, store.bucket, key, signal)) ?? '';
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      if (lines.length >= limit) return { lines, truncated: true };
      lines.push(JSON.parse(line));
    }
  }
  return { lines, truncated: false };
}

export async function objectExists(store: StoreConfig, key: string, signal?: AbortSignal): Promise<boolean> {
  try {
    await store.client.send(
      new HeadObjectCommand({ Bucket: store.bucket, Key: key }),
      signal ? { abortSignal: signal } : {},
    );
    return true;
  } catch (error) {
    if (statusOf(error) === 404) return false;
    throw error;
  }
}

async function readText(
  client: S3Client,
  bucket: string,
  key: string,
  signal?: AbortSignal,
): Promise<string | null> {
  try {
    const reply = await client.send(
      new GetObjectCommand({ Bucket: bucket, Key: key }),
      signal ? { abortSignal: signal } : {},
    );
    const bytes = (await reply.Body?.transformToByteArray()) ?? new Uint8Array();
    return (key.endsWith('.gz') ? gunzipSync(bytes) : Buffer.from(bytes)).toString('utf8');
  } catch (error) {
    if (statusOf(error) === 404) return null;
    throw error;
  }
}

function statusOf(error: unknown): number | undefined {
  return error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
}
