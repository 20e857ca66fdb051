// The shard simulation (K runner processes, the map's batches, the merge) equals a single run: 20,000 items.
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readManifest, runJob } from '../../functions/core/run.ts';
import type { Manifest } from '../../functions/core/types.ts';
import { runSharded } from '../../functions/local/shards.ts';
import { idsInParts, startTestS3, type TestS3 } from '../support/s3.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

const ITEMS = 20_000;

let s3: TestS3;
let upstream: Upstream;

beforeAll(async () => {
  [s3, upstream] = await Promise.all([startTestS3(), startUpstream({ origins: 4 })]);
});
afterAll(async () => {
  await Promise.all([s3.stop(), upstream.close()]);
});

const runtime = () => ({
  store: { client: s3.client, bucket: s3.bucket, prefix: 'jobs' },
  allow: ['private'],
});

/** Ids per kind, read from the parts the manifest lists. */
async function idSets(
  manifest: Manifest,
): Promise<{ results: Set<string>; errors: Set<string>; lines: number }> {
  const read = (keys: string[]) => idsInParts(s3.getText, keys);
  const results = await read(manifest.results);
  const errors = await read(manifest.errors);
  return { results: new Set(results), errors: new Set(errors), lines: results.length + errors.length };
}

describe('fanout run --shards K', () => {
  it('yields the same ids, outcomes and counts as a single run of a 20,000-item source', async () => {
    const lines: string[] = [];
    for (let i = 0; i < ITEMS; i++) {
      const origin = upstream.originList[i % upstream.originList.length];
      lines.push(`${origin}/item/${i}?bytes=64${i % 97 === 0 ? '&status=404' : ''}`);
    }
    lines.push(lines[10] as string, lines[20] as string, 'not a url', JSON.stringify({ url: 'ftp://x/y' }));
    await s3.client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: 'sources/20k.txt', Body: `${lines.join('\n')}\n` }),
    );
    const source = { s3: `s3://${s3.bucket}/sources/20k.txt` };
    const options = { concurrency: 64, perHost: 16, retries: { maxAttempts: 1 } };

    const single = await runJob({ jobId: 'k1', source, options }, runtime());
    const sharded = await runSharded({
      job: { jobId: 'k4', source, options },
      shards: 4,
      runtime: runtime(),
    });

    expect(sharded.status).toBe('complete');
    expect(sharded.counts).toEqual(single.counts);
    expect(sharded.counts).toEqual({
      total: ITEMS + 2,
      succeeded: 19_793,
      failed: 209,
      pending: 0,
      duplicates: 2,
    });
    const [a, b] = await Promise.all([idSets(single), idSets(sharded)]);
    expect(b.results).toEqual(a.results);
    expect(b.errors).toEqual(a.errors);
    expect(b.lines).toBe(ITEMS + 2);
    expect(sharded.results.every((key) => key.startsWith('jobs/k4/batches/'))).toBe(true);
    expect(await readManifest(runtime().store, 'k4')).toEqual(sharded);
  }, 240_000);

  it('gzips every part when the store does (fanout run --shards K --gzip)', async () => {
    const items = Array.from({ length: 40 }, (_, i) => `${upstream.origin}/item/${i}?bytes=64`);
    const sharded = await runSharded({
      job: { jobId: 'k2-gzip', items, options: { retries: { maxAttempts: 1 } } },
      shards: 2,
      runtime: { ...runtime(), store: { ...runtime().store, gzip: true } },
    });
    expect(sharded).toMatchObject({ status: 'complete', counts: { succeeded: 40 } });
    expect(sharded.results.length).toBeGreaterThan(0);
    expect(sharded.results.every((key) => key.endsWith('.jsonl.gz'))).toBe(true);
    expect((await idSets(sharded)).results.size).toBe(40);
  });

  it('prints a complete job again without running anything', async () => {
    const before = upstream.hits();
    const again = await runSharded({
      job: {
        jobId: 'k4',
        source: { s3: `s3://${s3.bucket}/sources/20k.txt` },
        options: { concurrency: 64, perHost: 16, retries: { maxAttempts: 1 } },
      },
      shards: 4,
      runtime: runtime(),
    });
    expect(again.status).toBe('complete');
    expect(upstream.hits()).toBe(before);
  });
});
