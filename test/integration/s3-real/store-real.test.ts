// The store against a real S3 (radosgw, `npm run test:s3-real`): multipart, create-only, CAS, overlap.
import { randomBytes } from 'node:crypto';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Client } from '../../../functions/adapters/s3-client.ts';
import { runJob } from '../../../functions/core/run.ts';
import {
  ManifestConflictError,
  putCreateOnly,
  readManifestVersion,
  type StoredManifest,
  StreamedObject,
  storeLayout,
  writeManifest,
} from '../../../functions/core/store.ts';
import type { Manifest } from '../../../functions/core/types.ts';
import { fakeEngine, urls } from '../../support/fake-engine.ts';
import { countIds, getObjectText, idsInParts, listAllKeys, listedKeys } from '../../support/s3.ts';

if (!process.env.AWS_ENDPOINT_URL_S3 && !process.env.AWS_ENDPOINT_URL) {
  throw new Error('the real-S3 suite needs AWS_ENDPOINT_URL_S3: run it with `npm run test:s3-real`');
}

let client: S3Client;
const bucket = `fanout-real-${randomBytes(4).toString('hex')}`;
let jobCounter = 0;
const nextJobId = (): string => `real-${++jobCounter}`;

beforeAll(async () => {
  client = createS3Client();
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
});
afterAll(async () => {
  const keys = await listAllKeys(client, bucket);
  for (let start = 0; start < keys.length; start += 1000) {
    await client.send(
      new DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: keys.slice(start, start + 1000).map((Key) => ({ Key })) },
      }),
    );
  }
  await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  client.destroy();
});

async function everyIdOnce(manifest: Manifest): Promise<{ ids: number; repeated: string[] }> {
  const read = (key: string) => getObjectText(client, bucket, key);
  const seen = countIds(await idsInParts(read, listedKeys(manifest)));
  return { ids: seen.size, repeated: [...seen].filter(([, count]) => count !== 1).map(([id]) => id) };
}

function sampleManifest(jobId: string, writer: string): StoredManifest {
  return {
    jobId,
    status: 'running',
    startedAt: new Date(0).toISOString(),
    finishedAt: null,
    runs: 1,
    counts: { total: 0, succeeded: 0, failed: 0, pending: 0, duplicates: 0 },
    results: [],
    errors: [],
    pending: null,
    options: {} as Manifest['options'],
    hosts: {},
    writer,
  };
}

describe('real S3', () => {
  it.each([false, true])('round-trips a streamed multipart part (gzip %s)', async (gzip) => {
    const layout = storeLayout({ client, bucket, gzip }, nextJobId());
    const key = `${layout.base}/results/0001-00000.jsonl${gzip ? '.gz' : ''}`;
    const part = new StreamedObject({ layout, key, createOnly: true, token: 't' });
    const lines: string[] = [];
    // 12 MiB of incompressible-ish lines: three 5 MiB chunks, so a real multipart upload.
    for (let index = 0; index < 1_536; index++) {
      const line = JSON.stringify({ id: `i${index}`, value: randomBytes(4_000).toString('base64') });
      lines.push(line);
      await part.write(line);
    }
    await part.close();
    expect(await getObjectText(client, bucket, key)).toBe(`${lines.join('\n')}\n`);
  });

  it('answers 412 to If-None-Match: * on an existing key, and putCreateOnly tells ours from a rival’s', async () => {
    const layout = storeLayout({ client, bucket }, nextJobId());
    const key = `${layout.base}/runs/0001.json`;
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: '{}', IfNoneMatch: '*' }));
    await expect(
      client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: '{}', IfNoneMatch: '*' })),
    ).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
    const mine = `${layout.base}/runs/0002.json`;
    expect(await putCreateOnly(layout, mine, '{}', 'mine', undefined)).toBe(true);
    expect(await putCreateOnly(layout, mine, '{}', 'mine', undefined)).toBe(true);
    expect(await putCreateOnly(layout, mine, '{}', 'rival', undefined)).toBe(false);
  });

  it('compare-and-swaps the manifest: the current ETag wins, a stale one is refused', async () => {
    const layout = storeLayout({ client, bucket }, nextJobId());
    const first = await writeManifest(layout, sampleManifest(layout.base, 'a:1'), null, undefined);
    await expect(
      writeManifest(layout, sampleManifest(layout.base, 'b:1'), null, undefined),
    ).rejects.toBeInstanceOf(ManifestConflictError);
    const second = await writeManifest(layout, sampleManifest(layout.base, 'a:2'), first, undefined);
    await expect(
      writeManifest(layout, sampleManifest(layout.base, 'b:2'), first, undefined),
    ).rejects.toBeInstanceOf(ManifestConflictError);
    await writeManifest(layout, sampleManifest(layout.base, 'a:3'), second, undefined);
    expect((await readManifestVersion(layout, undefined))?.manifest.writer).toBe('a:3');
  });

  it('ends two overlapping runs of one job with every item exactly once', async () => {
    const jobId = nextJobId();
    const store = { client, bucket, checkpointMs: 50 };
    const engineA = fakeEngine((_item, index) => (index % 9 === 4 ? 'fail' : 'ok'), { delayMs: 2 });
    const engineB = fakeEngine(() => 'ok', { delayMs: 2 });
    const job = { jobId, items: urls(150) };
    const first = runJob(job, { store, startFanOut: engineA.startFanOut, leaseMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    const second = runJob(job, { store, startFanOut: engineB.startFanOut, leaseMs: 10_000 });
    const [a, b] = await Promise.all([first, second]);
    expect(a.status).toBe('complete');
    expect(b).toEqual(a);
    expect(engineA.fetched.length + engineB.fetched.length).toBe(150);
    expect(await everyIdOnce(a)).toEqual({ ids: 150, repeated: [] });
  });

  it('fences out a run whose job was taken over; the taker ends with every item exactly once', async () => {
    const jobId = nextJobId();
    // Quiet between its first and last manifest writes (no roll, no heartbeat before 2.5 s), as a stalled
    // process is: the taker's compare-and-swap then meets no concurrent write. With checkpoints every few
    // milliseconds a taker with a 0 lease keeps losing the race instead, and the first run simply finishes.
    const store = { client, bucket, checkpointMs: 10_000 };
    const job = { jobId, items: urls(200) };
    const first = runJob(job, {
      store,
      startFanOut: fakeEngine(() => 'ok', { delayMs: 10 }).startFanOut,
    }).then(
      () => null,
      (error: unknown) => error,
    );
    // Take over once the first run holds the job (its `running` manifest is there), not at a guessed time.
    const layout = storeLayout(store, jobId);
    for (let tries = 0; tries < 200; tries++) {
      if ((await readManifestVersion(layout, undefined))?.manifest.status === 'running') break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const second = await runJob(job, { store, startFanOut: fakeEngine().startFanOut, leaseMs: 0 });
    expect(await first).toBeInstanceOf(ManifestConflictError);
    expect(second.status).toBe('complete');
    expect(await everyIdOnce(second)).toEqual({ ids: 200, repeated: [] });
    const listed = new Set([...second.results, ...second.errors]);
    const leftovers = (await listAllKeys(client, bucket, `jobs/${jobId}/`)).filter(
      (key) => /\/(results|errors)\//.test(key) && !listed.has(key),
    );
    // The fenced run may still have been closing a part after the takeover's cleanup: at most that one.
    expect(leftovers.length).toBeLessThanOrEqual(2);
  });
});
