// The embedded S3 and the S3 client settings: loopback-only binding, a real SDK round trip, env parsing.
import { existsSync, mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Client, s3SettingsFrom } from '../../functions/adapters/s3-client.ts';
import { startEmbeddedS3 } from '../../functions/local/embedded-s3.ts';
import { getObjectText, listAllKeys, startTestS3, type TestS3 } from '../support/s3.ts';

function tryConnect(host: string, port: number): Promise<'connected' | string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

describe('embedded S3', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startTestS3();
  });
  afterAll(async () => {
    await s3.stop();
  });

  it('listens on 127.0.0.1 and on no other interface', async () => {
    const port = Number(new URL(s3.endpoint).port);
    expect(new URL(s3.endpoint).hostname).toBe('127.0.0.1');
    expect(await tryConnect('127.0.0.1', port)).toBe('connected');
    // Every other local address must refuse: the emulator has no authentication.
    const others = Object.values(networkInterfaces())
      .flat()
      .filter((address) => address !== undefined && address.address !== '127.0.0.1')
      .map((address) => address?.address ?? '');
    others.push('::1');
    for (const host of new Set(others)) {
      if (host.startsWith('fe80:')) continue; // link-local needs a scope id to dial; it is no different
      expect([host, await tryConnect(host, port)]).not.toEqual([host, 'connected']);
    }
  });

  it('round-trips an object through the real SDK, and persists it as a file', async () => {
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'a/b.txt', Body: 'hello' }));
    expect(await s3.listKeys('a/')).toEqual(['a/b.txt']);
    expect(await s3.getText('a/b.txt')).toBe('hello');
  });
});

/** Every file under `dir`, as paths relative to it. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1))
    .sort();
}

describe('embedded S3 after a process killed mid-write', () => {
  it('starts anyway: unreadable files move to the quarantine, the rest is served, and the log says so', async () => {
    const root = mkdtempSync(join(tmpdir(), 'fanout-s3-repair-'));
    const dir = join(root, 's3');
    const quarantineDir = join(root, 's3-quarantine');
    try {
      const bucket = 'repair-test';
      const first = await startEmbeddedS3({ dir, buckets: [bucket] });
      const put = (Key: string, Body: string) =>
        first.client.send(new PutObjectCommand({ Bucket: bucket, Key, Body }));
      await put('jobs/a/manifest.json', '{"status":"complete"}');
      await put('jobs/a/results/0001-00000.jsonl', '{"id":"1"}\n');
      await put('jobs/a/results/0001-00001.jsonl', '{"id":"2"}\n');
      await put('jobs/a/job.json', '{"jobId":"a"}');
      const upload = await first.client.send(
        new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'jobs/a/results/0002-00000.jsonl' }),
      );
      await first.client.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: 'jobs/a/results/0002-00000.jsonl',
          UploadId: upload.UploadId,
          PartNumber: 1,
          Body: 'x',
        }),
      );
      await first.stop();

      // What a kill leaves: an empty meta, a meta cut mid-JSON, data cut by an overwrite, data with no
      // meta, a bucket file cut short, an upload part's meta cut.
      const objects = join(dir, 'buckets', bucket, 'objects', 'jobs', 'a');
      writeFileSync(join(objects, 'manifest.json.meta.json'), '');
      writeFileSync(join(objects, 'results', '0001-00000.jsonl.meta.json'), '{"key":"jobs/a/res');
      truncateSync(join(objects, 'job.json.data'), 3);
      writeFileSync(join(objects, 'results', '0001-00009.jsonl.data'), '{"id":"9"');
      writeFileSync(join(dir, 'buckets', bucket, '.bucket.json'), '{"na');
      writeFileSync(join(dir, '_multipart', upload.UploadId ?? '', 'parts', '1.meta.json'), '{');

      const messages: string[] = [];
      const second = await startEmbeddedS3({ dir, quarantineDir, log: (line) => messages.push(line) });
      try {
        expect(await listAllKeys(second.client, bucket)).toEqual(['jobs/a/results/0001-00001.jsonl']);
        expect(await getObjectText(second.client, bucket, 'jobs/a/results/0001-00001.jsonl')).toBe(
          '{"id":"2"}\n',
        );
        const moved = filesUnder(quarantineDir).map((path) => path.replace(/^[^/]+\//, ''));
        expect(moved).toEqual(
          [
            `_multipart/${upload.UploadId}/.upload.json`,
            `_multipart/${upload.UploadId}/parts/1.data`,
            `_multipart/${upload.UploadId}/parts/1.meta.json`,
            `buckets/${bucket}/objects/jobs/a/job.json.data`,
            `buckets/${bucket}/objects/jobs/a/job.json.meta.json`,
            `buckets/${bucket}/objects/jobs/a/manifest.json.data`,
            `buckets/${bucket}/objects/jobs/a/manifest.json.meta.json`,
            `buckets/${bucket}/objects/jobs/a/results/0001-00000.jsonl.data`,
            `buckets/${bucket}/objects/jobs/a/results/0001-00000.jsonl.meta.json`,
            `buckets/${bucket}/objects/jobs/a/results/0001-00009.jsonl.data`,
          ].sort(),
        );
        expect(second.quarantined).toHaveLength(8);
        expect(messages.join('\n')).toMatch(/rewrote the unreadable .*\.bucket\.json of bucket repair-test/);
        expect(messages.join('\n')).toMatch(/moved 8 unreadable file\(s\) .* into .*s3-quarantine/);
      } finally {
        await second.stop();
      }
      // Clean now: the next start moves nothing and says nothing.
      const quiet: string[] = [];
      const third = await startEmbeddedS3({ dir, quarantineDir, log: (line) => quiet.push(line) });
      await third.stop();
      expect(third.quarantined).toEqual([]);
      expect(quiet).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('S3 client settings', () => {
  it.each([
    [{}, { region: undefined, endpoint: undefined, forcePathStyle: false }],
    [{ AWS_REGION: 'eu-west-1' }, { region: 'eu-west-1', endpoint: undefined, forcePathStyle: false }],
    [
      { AWS_ENDPOINT_URL: 'http://127.0.0.1:9000' },
      { region: 'us-east-1', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true },
    ],
    [
      { AWS_ENDPOINT_URL: 'http://a:1', AWS_ENDPOINT_URL_S3: 'http://b:2', AWS_DEFAULT_REGION: 'ap-south-1' },
      { region: 'ap-south-1', endpoint: 'http://b:2', forcePathStyle: true },
    ],
  ])('reads %j as %j', (env, expected) => {
    expect(s3SettingsFrom(env)).toEqual(expected);
  });

  it('builds a client with the standard retry mode and path-style addressing for an endpoint', async () => {
    const client = createS3Client({
      AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9',
      AWS_ACCESS_KEY_ID: 'k',
      AWS_SECRET_ACCESS_KEY: 's',
    });
    expect(await client.config.region()).toBe('us-east-1');
    expect(client.config.forcePathStyle).toBe(true);
    expect(await client.config.retryStrategy()).toMatchObject({ mode: 'standard' });
    expect(await client.config.credentials()).toMatchObject({ accessKeyId: 'k', secretAccessKey: 's' });
    client.destroy();
  });
});
