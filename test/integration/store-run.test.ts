// runJob with the real engine: a local upstream on 127.0.0.1, the embedded S3, deadlines and fail-fast.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readManifest, runJob } from '../../functions/core/run.ts';
import type { Manifest } from '../../functions/core/types.ts';
import { countIds, idsInParts, listedKeys, startTestS3, type TestS3 } from '../support/s3.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let s3: TestS3;
let upstream: Upstream;

beforeAll(async () => {
  [s3, upstream] = await Promise.all([startTestS3(), startUpstream()]);
});
afterAll(async () => {
  await Promise.all([s3.stop(), upstream.close()]);
});

const runtime = () => ({ store: { client: s3.client, bucket: s3.bucket }, allow: ['private'] as string[] });

async function idCounts(manifest: Manifest): Promise<Map<string, number>> {
  return countIds(await idsInParts(s3.getText, listedKeys(manifest)));
}

describe('runJob with the real engine', () => {
  it('fetches every item once and lands results, errors and host figures', async () => {
    upstream.reset();
    const items = [
      ...Array.from({ length: 40 }, (_, index) => `${upstream.url}item/${index}`),
      ...Array.from({ length: 5 }, (_, index) => `${upstream.url}missing/${index}?status=404`),
    ];
    const manifest = await runJob({ jobId: 'engine-basic', items }, runtime());
    expect(manifest.status).toBe('complete');
    expect(manifest.counts).toEqual({ total: 45, succeeded: 40, failed: 5, pending: 0, duplicates: 0 });
    expect(upstream.hits()).toBe(45);
    const counts = await idCounts(manifest);
    expect(counts.size).toBe(45);
    const errors = (await s3.getText(manifest.errors[0] ?? '')).trim().split('\n');
    expect(JSON.parse(errors[0] ?? '{}')).toMatchObject({ error: { code: 'HTTP_STATUS', status: 404 } });
    const results = (await s3.getText(manifest.results[0] ?? '')).trim().split('\n');
    expect(JSON.parse(results[0] ?? '{}')).toMatchObject({
      status: 200,
      attempts: 1,
      value: { pad: expect.any(String) },
    });
    expect(Object.keys(manifest.hosts)).toHaveLength(1);

    const again = await runJob({ jobId: 'engine-basic', items }, runtime());
    expect(again).toEqual(manifest);
    expect(upstream.hits()).toBe(45);
  });

  it('stops at the deadline with a partial manifest, then a rerun fetches only the pending items', async () => {
    upstream.reset();
    const fast = Array.from({ length: 10 }, (_, index) => `${upstream.url}item/${index}?k=deadline`);
    // Hang on the first hit only: the second run gets an answer.
    const slow = Array.from(
      { length: 5 },
      (_, index) => `${upstream.url}item/${100 + index}?failFirst=1&failStatus=hang&key=slow-${index}`,
    );
    const job = { jobId: 'engine-deadline', items: [...fast, ...slow] };
    const partial = await runJob(job, { ...runtime(), deadline: Date.now() + 1_500 });
    expect(partial.status).toBe('partial');
    expect(partial.counts.pending).toBeGreaterThanOrEqual(5);
    expect(partial.counts.succeeded + partial.counts.failed + partial.counts.pending).toBe(15);
    const pendingLines = (await s3.getText(partial.pending ?? '')).trim().split('\n');
    expect(pendingLines).toHaveLength(partial.counts.pending);

    const complete = await runJob(job, runtime());
    expect(complete.status).toBe('complete');
    expect(complete.counts).toMatchObject({ total: 15, succeeded: 15, pending: 0 });
    const counts = await idCounts(complete);
    expect(counts.size).toBe(15);
    expect([...counts.values()].every((count) => count === 1)).toBe(true);
    // Fast items were not fetched twice: 10 + 5 hung + the pending ones again.
    expect(upstream.hits()).toBe(15 + partial.counts.pending);
  });

  it('records a fail-fast job as failed with ABORTED, every item accounted for', async () => {
    const items = [
      `${upstream.url}missing/0?status=404`,
      ...Array.from({ length: 20 }, (_, index) => `${upstream.url}item/${index}?latency=200&k=ff`),
    ];
    const manifest = await runJob(
      { jobId: 'engine-fail-fast', items, options: { mode: 'fail-fast', concurrency: 2, perHost: 2 } },
      runtime(),
    );
    expect(manifest.status).toBe('failed');
    expect(manifest.error?.code).toBe('ABORTED');
    expect(manifest.counts.succeeded + manifest.counts.failed).toBe(21);
    expect((await idCounts(manifest)).size).toBe(21);
    expect((await readManifest({ client: s3.client, bucket: s3.bucket }, 'engine-fail-fast'))?.status).toBe(
      'failed',
    );
  });
});
