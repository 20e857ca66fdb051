// Distributed Map pieces against the embedded S3 and a loopback upstream: source streaming, plan, batches, merge.
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type BatchEvent,
  batchEvents,
  executionInputOf,
  mergeBatches,
  planBatches,
  runBatch,
} from '../../functions/core/batches.ts';
import { redriveJob } from '../../functions/core/redrive.ts';
import type { JobRuntime } from '../../functions/core/run.ts';
import { readManifest, runJob } from '../../functions/core/run.ts';
import { sourceEntries } from '../../functions/core/source.ts';
import type { Manifest } from '../../functions/core/types.ts';
import { hitClock } from '../support/lambda.ts';
import { startTestS3, type TestS3 } from '../support/s3.ts';
import { injectS3Answers } from '../support/s3-faults.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let s3: TestS3;
let upstream: Upstream;

beforeAll(async () => {
  [s3, upstream] = await Promise.all([startTestS3(), startUpstream()]);
});
afterAll(async () => {
  await Promise.all([s3.stop(), upstream.close()]);
});
beforeEach(() => upstream.reset());

const store = () => ({ client: s3.client, bucket: s3.bucket, prefix: 'jobs' });
const runtime = (extra: Partial<JobRuntime> = {}): JobRuntime => ({
  store: store(),
  allow: ['private'],
  ...extra,
});

async function putSource(key: string, lines: string[]): Promise<string> {
  await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: `${lines.join('\n')}\n` }));
  return `s3://${s3.bucket}/${key}`;
}

interface Outcomes {
  results: string[];
  errors: Map<string, string>;
  pending: string[];
}

/** Every id the manifest's parts and pending hold, with the error code of each failed one. */
async function outcomesOf(manifest: Manifest): Promise<Outcomes> {
  const read = async (key: string) =>
    (await s3.getText(key))
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { id: string; error?: { code: string } });
  const results = (await Promise.all(manifest.results.map(read))).flat().map((line) => line.id);
  const errors = new Map<string, string>();
  for (const line of (await Promise.all(manifest.errors.map(read))).flat())
    errors.set(line.id, line.error?.code ?? '');
  const pending = manifest.pending ? (await read(manifest.pending)).map((line) => line.id) : [];
  return { results, errors, pending };
}

/** Every id appears once across results, errors and pending. */
function expectExactlyOnce(outcomes: Outcomes): void {
  const all = [...outcomes.results, ...outcomes.errors.keys(), ...outcomes.pending];
  expect(new Set(all).size).toBe(all.length);
}

async function collect(plan: Awaited<ReturnType<typeof planBatches>>): Promise<BatchEvent[]> {
  const events: BatchEvent[] = [];
  for await (const event of batchEvents(plan, store())) events.push(event);
  return events;
}

describe('an S3 source', () => {
  it('streams JSONL items and plain URLs alike; a bad line fails only itself with INVALID_URL', async () => {
    const uri = await putSource('sources/mixed.txt', [
      `${upstream.url}item/1`,
      JSON.stringify({ url: `${upstream.url}item/2`, method: 'POST', body: 'x', id: 'posted' }),
      '',
      'ftp://example.com/not-http',
      '{"url": broken json',
      `${upstream.url}item/3`,
    ]);
    const entries = [];
    for await (const entry of sourceEntries(store(), {
      bucket: s3.bucket,
      key: uri.split(`${s3.bucket}/`)[1] ?? '',
    }))
      entries.push(entry);
    expect(entries.map((entry) => [entry.index, entry.ok])).toEqual([
      [0, true],
      [1, true],
      [2, false],
      [3, false],
      [4, true],
    ]);
    expect(entries[1]).toMatchObject({ ok: true, item: { id: 'posted', method: 'POST', body: 'x' } });
    expect(entries[2]).toMatchObject({ ok: false, error: { code: 'INVALID_URL' } });
    expect(entries[3]).toMatchObject({ ok: false, error: { code: 'INVALID_URL' } });
  });
});

describe('plan, batches and merge', () => {
  it('equal a single run of the same source: same ids, same outcomes, same counts', async () => {
    const lines: string[] = [];
    for (let i = 0; i < 230; i++) lines.push(`${upstream.url}item/${i}?status=${i % 17 === 0 ? 404 : 200}`);
    lines.push(`${upstream.url}item/5?status=200`, `${upstream.url}item/7?status=200`); // duplicates
    lines.splice(40, 0, 'not a url at all');
    lines.splice(150, 0, JSON.stringify({ url: 'file:///etc/passwd' }));
    const uri = await putSource('sources/equal.txt', lines);

    const single = await runJob({ jobId: 'equal-single', source: { s3: uri } }, runtime());
    const plan = await planBatches({ jobId: 'equal-batched', source: { s3: uri } }, runtime(), {
      batchSize: 50,
      mapConcurrency: 4,
    });
    expect(plan).toMatchObject({ items: 232, batches: 5, duplicates: 2, hostShare: 4 });
    const events = await collect(plan);
    expect(events.map((event) => event.Items.length)).toEqual([50, 50, 50, 50, 32]);
    for (const event of events) await runBatch(event, runtime());
    const merged = await mergeBatches('equal-batched', runtime());

    expect(merged.status).toBe('complete');
    expect(merged.counts).toEqual(single.counts);
    expect(merged.counts).toMatchObject({ total: 232, duplicates: 2, pending: 0 });
    expect(merged.options).toEqual(single.options);
    const [a, b] = await Promise.all([outcomesOf(single), outcomesOf(merged)]);
    expect(new Set(b.results)).toEqual(new Set(a.results));
    expect(b.errors).toEqual(a.errors);
    expect([...b.errors.values()].filter((code) => code === 'INVALID_URL')).toHaveLength(2);
    expectExactlyOnce(b);
    expect(await readManifest(store(), 'equal-batched')).toMatchObject({ status: 'complete' });
  });

  it('divides perHost and perHostRate among the batches that run at once, and keeps the job options', async () => {
    const items = Array.from({ length: 30 }, (_, i) => `${upstream.url}item/${i}`);
    const job = { jobId: 'shared-hosts', items, options: { concurrency: 64, perHost: 16, perHostRate: 100 } };
    const plan = await planBatches(job, runtime(), { batchSize: 10, mapConcurrency: 8 });
    expect(plan.hostShare).toBe(3);
    expect(plan.batchOptions).toMatchObject({ perHost: 5, perHostRate: 100 / 3, concurrency: 64 });
    expect(plan.options).toMatchObject({ perHost: 16, perHostRate: 100 });
    expect(executionInputOf(plan)).toEqual({
      jobId: 'shared-hosts',
      source: { bucket: s3.bucket, key: 'jobs/shared-hosts/map/items.jsonl' },
      options: plan.batchOptions,
      toleratedFailurePercentage: 100,
    });
  });

  it('tolerates no failed batch for a fail-fast job, and maxFailureRatio as a percentage otherwise', async () => {
    const items = [`${upstream.url}item/1`];
    const failFast = await planBatches({ jobId: 'ff', items, options: { mode: 'fail-fast' } }, runtime());
    const ratio = await planBatches({ jobId: 'ratio', items, options: { maxFailureRatio: 0.25 } }, runtime());
    expect([failFast.toleratedFailurePercentage, ratio.toleratedFailurePercentage]).toEqual([0, 25]);
  });

  it('judges maxFailureRatio at the merge as one run would: not before 10 items (or all) finished', async () => {
    const job = (jobId: string) => ({
      jobId,
      items: Array.from({ length: 20 }, (_, i) => `${upstream.url}item/${i}?status=${i < 2 ? 500 : 200}`),
      options: { concurrency: 1, maxFailureRatio: 0.5, retries: { maxAttempts: 1 } },
    });
    // A deadline after 3 fetches (an injected clock, 1 s per hit): 2 failed, 1 succeeded, 17 pending.
    const timed = (): Partial<JobRuntime> => {
      const start = Date.now();
      return { clock: hitClock(() => upstream.hits(), 1_000, start), deadline: start + 2_500 };
    };
    const single = await runJob(job('ratio-single'), runtime(timed()));
    upstream.reset();
    const plan = await planBatches(job('ratio-batched'), runtime(), { batchSize: 20 });
    const events: BatchEvent[] = [];
    for await (const event of batchEvents(plan, store())) events.push(event);
    const batch = await runBatch(events[0] as BatchEvent, runtime(timed()));
    const merged = await mergeBatches('ratio-batched', runtime());
    expect([single.status, batch.status, merged.status]).toEqual(['partial', 'partial', 'partial']);
    expect(merged.counts).toMatchObject({ total: 20, succeeded: 1, failed: 2, pending: 17 });
  });

  it('cuts a batch early at the 256 KiB input bound and gives it an id of its own', async () => {
    const body = 'x'.repeat(60_000);
    const items = Array.from({ length: 10 }, (_, i) => ({
      url: `${upstream.url}echo?i=${i}`,
      method: 'POST',
      body,
    }));
    const plan = await planBatches({ jobId: 'big-bodies', items }, runtime(), { batchSize: 8 });
    const events = await collect(plan);
    expect(events.map((event) => event.Items[0]?.index)).toEqual([0, 4, 8]);
    const ids = [];
    for (const event of events) ids.push((await runBatch(event, runtime())).batch);
    expect(ids).toEqual([
      'big-bodies/batches/00000',
      'big-bodies/batches/00000-00004',
      'big-bodies/batches/00001',
    ]);
    const merged = await mergeBatches('big-bodies', runtime());
    expect(merged.counts).toMatchObject({ total: 10, succeeded: 10 });
  });
});

describe('a repeated merge', () => {
  async function eventsOf(plan: Awaited<ReturnType<typeof planBatches>>): Promise<BatchEvent[]> {
    const events: BatchEvent[] = [];
    for await (const event of batchEvents(plan, store())) events.push(event);
    return events;
  }
  async function idsIn(manifest: Manifest) {
    const read = async (key: string) =>
      (await s3.getText(key))
        .split('\n')
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as { id: string }).id);
    const listed = [...manifest.results, ...manifest.errors, ...(manifest.pending ? [manifest.pending] : [])];
    const pending = manifest.pending ? await read(manifest.pending) : [];
    return { all: (await Promise.all(listed.map(read))).flat(), pending };
  }

  it("after a redrive returns the redrive's manifest instead of undoing it (a retried execution)", async () => {
    const items = [
      ...Array.from({ length: 4 }, (_, i) => `${upstream.url}ok/${i}`),
      ...Array.from({ length: 2 }, (_, i) => `${upstream.url}flaky/${i}?failFirst=1&failStatus=500`),
    ];
    const plan = await planBatches(
      { jobId: 'merge-after-redrive', items, options: { retries: { maxAttempts: 1 } } },
      runtime(),
      { batchSize: 3 },
    );
    for (const event of await eventsOf(plan)) await runBatch(event, runtime());
    expect((await mergeBatches('merge-after-redrive', runtime())).counts).toMatchObject({
      succeeded: 4,
      failed: 2,
    });
    const redriven = await redriveJob('merge-after-redrive', {}, runtime());
    expect(redriven.counts).toMatchObject({ total: 6, succeeded: 6, failed: 0 });
    const again = await mergeBatches('merge-after-redrive', runtime());
    expect(again.counts).toMatchObject({ total: 6, succeeded: 6, failed: 0 });
    const ids = (await idsIn(again)).all;
    expect(new Set(ids).size).toBe(6);
    expect(ids).toHaveLength(6);
  });

  it('that fails its manifest write leaves the commit record and its pending.jsonl consistent', async () => {
    const items = Array.from({ length: 6 }, (_, i) => `${upstream.url}ok/${i}`);
    const plan = await planBatches({ jobId: 'merge-fails-late', items }, runtime(), { batchSize: 2 });
    const events = await eventsOf(plan);
    await runBatch(events[0] as BatchEvent, runtime());
    expect((await mergeBatches('merge-fails-late', runtime())).counts).toMatchObject({ pending: 4 });
    await runBatch(events[1] as BatchEvent, runtime());
    // Test-only S3 fault: the merge's final manifest write is refused (a checkpoint would be let through).
    const restore = injectS3Answers(s3.client, (command, { input }) => {
      if (command !== 'PutObjectCommand' || input.Key !== 'jobs/merge-fails-late/manifest.json') return null;
      return String(input.Body).includes('"status": "running"')
        ? null
        : { status: 403, code: 'AccessDenied' };
    });
    try {
      await expect(mergeBatches('merge-fails-late', runtime())).rejects.toThrow();
    } finally {
      restore();
    }
    const committed = (await readManifest(store(), 'merge-fails-late')) as Manifest;
    const { all, pending } = await idsIn(committed);
    expect(pending).toHaveLength(committed.pending === null ? 0 : committed.counts.pending);
    expect(new Set(all).size).toBe(all.length);
    // The next merge (Step Functions' retry) finishes the job's record from the batches.
    const retried = await mergeBatches('merge-fails-late', runtime());
    expect(retried.counts).toMatchObject({ total: 6, succeeded: 4, pending: 2 });
    expect(new Set((await idsIn(retried)).all).size).toBe(6);
  });
});

describe('a retried batch', () => {
  it('resumes in place after running out of time: no item twice, nothing lost', async () => {
    const items = Array.from({ length: 40 }, (_, i) => `${upstream.url}item/${i}`);
    const plan = await planBatches({ jobId: 'retried', items, options: { concurrency: 2 } }, runtime(), {
      batchSize: 40,
    });
    const [event] = await collect(plan);
    if (!event) throw new Error('no batch');
    const start = Date.now();
    const clock = hitClock(() => upstream.hits(), 1_000, start);
    const first = await runBatch(event, runtime({ clock, deadline: start + 10_500 }));
    expect(first.status).toBe('partial');
    expect(first.counts.pending).toBeGreaterThan(0);

    const again = await runBatch(event, runtime());
    expect(again).toMatchObject({
      batch: first.batch,
      status: 'complete',
      counts: { total: 40, succeeded: 40 },
    });
    const merged = await mergeBatches('retried', runtime());
    const outcomes = await outcomesOf(merged);
    expect(outcomes.results).toHaveLength(40);
    expectExactlyOnce(outcomes);
    expect(merged.runs).toBe(2);
    expect(merged.results.every((key) => key.startsWith('jobs/retried/batches/00000/results/'))).toBe(true);
  });

  it('is returned as it is once complete: nothing fetched, no new part', async () => {
    const items = Array.from({ length: 5 }, (_, i) => `${upstream.url}item/${i}`);
    const plan = await planBatches({ jobId: 'redelivered', items }, runtime());
    const [event] = await collect(plan);
    if (!event) throw new Error('no batch');
    await runBatch(event, runtime());
    const hits = upstream.hits();
    const keys = await s3.listKeys('jobs/redelivered/batches/');
    const again = await runBatch(event, runtime());
    expect(again.status).toBe('complete');
    expect(upstream.hits()).toBe(hits);
    expect(await s3.listKeys('jobs/redelivered/batches/')).toEqual(keys);
  });

  it('that never ran leaves its items pending in the merged manifest (partial)', async () => {
    const items = Array.from({ length: 25 }, (_, i) => `${upstream.url}item/${i}`);
    const plan = await planBatches({ jobId: 'missing-batch', items }, runtime(), { batchSize: 10 });
    const events = await collect(plan);
    expect(events).toHaveLength(3);
    await runBatch(events[0] as BatchEvent, runtime());
    await runBatch(events[2] as BatchEvent, runtime());
    const merged = await mergeBatches('missing-batch', runtime());
    expect(merged).toMatchObject({ status: 'partial', counts: { total: 25, succeeded: 15, pending: 10 } });
    const outcomes = await outcomesOf(merged);
    expect(outcomes.pending).toHaveLength(10);
    expectExactlyOnce(outcomes);
  });

  it('aborted by its failure ratio fails its child execution and the merged job', async () => {
    const items = Array.from({ length: 20 }, (_, i) => `${upstream.url}item/${i}?status=500`);
    const job = { jobId: 'aborted', items, options: { maxFailureRatio: 0.1, retries: { maxAttempts: 1 } } };
    const plan = await planBatches(job, runtime());
    const [event] = await collect(plan);
    await expect(runBatch(event, runtime())).rejects.toMatchObject({ code: 'BATCH_ABORTED' });
    const merged = await mergeBatches('aborted', runtime());
    expect(merged).toMatchObject({ status: 'failed', error: { code: 'ABORTED' } });
  });
});

describe('runBatch input', () => {
  it.each([
    ['no Items', { BatchInput: { jobId: 'j', options: {}, batchSize: 10 } }],
    ['empty Items', { Items: [], BatchInput: { jobId: 'j', options: {}, batchSize: 10 } }],
    [
      'a bad job id',
      { Items: [{ index: 0, value: 'x' }], BatchInput: { jobId: '../j', options: {}, batchSize: 1 } },
    ],
    ['no batch size', { Items: [{ index: 0, value: 'x' }], BatchInput: { jobId: 'j', options: {} } }],
  ])('rejects %s with INVALID_EVENT', async (_name, event) => {
    await expect(runBatch(event, runtime())).rejects.toMatchObject({ code: 'INVALID_EVENT' });
  });

  it('refuses to merge a job that was never planned', async () => {
    await expect(mergeBatches('never-planned', runtime())).rejects.toMatchObject({ code: 'UNKNOWN_JOB' });
  });
});
