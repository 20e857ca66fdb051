// The result store through the real SDK against fauxqs: layout, read-back, rolls, gzip, resume, failures.
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readManifest, resumeJob, runJob } from '../../functions/core/run.ts';
import { StreamedObject, storeLayout } from '../../functions/core/store.ts';
import type { Manifest, StoreConfig } from '../../functions/core/types.ts';
import { fakeEngine, urls, type Verdict } from '../support/fake-engine.ts';
import { startTestS3, type TestS3 } from '../support/s3.ts';
import { injectS3Answers } from '../support/s3-faults.ts';

let s3: TestS3;
let jobCounter = 0;
const nextJobId = (): string => `job-${++jobCounter}`;

beforeAll(async () => {
  s3 = await startTestS3();
});
afterAll(async () => {
  await s3.stop();
});

function storeConfig(extra: Partial<StoreConfig> = {}): StoreConfig {
  return { client: s3.client, bucket: s3.bucket, ...extra };
}

async function readLines(keys: readonly string[]): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  for (const key of keys) {
    const text = await s3.getText(key);
    for (const line of text.split('\n')) if (line) out.push(JSON.parse(line) as Record<string, unknown>);
  }
  return out;
}

/** Every id across listed results, errors and pending, with how often it appears. */
async function idCounts(manifest: Manifest): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const keys = [...manifest.results, ...manifest.errors, ...(manifest.pending ? [manifest.pending] : [])];
  for (const line of await readLines(keys)) {
    const id = String(line.id);
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

// fauxqs does not implement ListMultipartUploads; its open uploads are directories under _multipart/.
async function openUploads(): Promise<number> {
  return (await readdir(join(s3.dir, '_multipart'))).length;
}

const everyThird = (_item: unknown, index: number): Verdict => (index % 3 === 2 ? 'fail' : 'ok');

describe('runJob writes every outcome through the manifest', () => {
  it('reads back results and errors that match the outcomes exactly, with counts that add up', async () => {
    const jobId = nextJobId();
    const engine = fakeEngine(everyThird);
    const items = [...urls(30), 'http://upstream.test/item/0', 'http://upstream.test/item/0'];
    const manifest = await runJob(
      { jobId, items },
      { store: storeConfig(), startFanOut: engine.startFanOut },
    );

    expect(manifest.status).toBe('complete');
    expect(manifest.counts).toEqual({ total: 30, succeeded: 20, failed: 10, pending: 0, duplicates: 2 });
    expect(manifest.results).toEqual([`jobs/${jobId}/results/0001-00000.jsonl`]);
    expect(manifest.errors).toEqual([`jobs/${jobId}/errors/0001-00000.jsonl`]);
    expect(manifest.pending).toBeNull();
    const results = await readLines(manifest.results);
    const errors = await readLines(manifest.errors);
    expect(results).toHaveLength(20);
    expect(errors).toHaveLength(10);
    expect(Object.keys(results[0] ?? {})).toEqual(['id', 'url', 'status', 'attempts', 'ms', 'value']);
    expect(Object.keys(errors[0] ?? {})).toEqual(['id', 'url', 'error', 'attempts', 'ms']);
    expect(errors[0]?.error).toEqual({ code: 'HTTP_STATUS', message: 'status 500', status: 500 });
    const counts = await idCounts(manifest);
    expect(counts.size).toBe(30);
    expect([...counts.values()].every((count) => count === 1)).toBe(true);
    expect(await readManifest(storeConfig(), jobId)).toMatchObject({
      status: 'complete',
      counts: manifest.counts,
    });
  });

  it('rolls parts at the size bound', async () => {
    const jobId = nextJobId();
    const engine = fakeEngine(() => 'ok', { valueBytes: 200 });
    const manifest = await runJob(
      { jobId, items: urls(40) },
      { store: storeConfig({ partBytes: 2_000 }), startFanOut: engine.startFanOut },
    );
    // A part closes at the first line that takes it to 2,000 bytes: never smaller (but the last), never a line over.
    expect(manifest.results.length).toBeGreaterThan(3);
    expect(manifest.results[1]).toBe(`jobs/${jobId}/results/0001-00001.jsonl`);
    const sizes = await Promise.all(
      manifest.results.map(async (key) => Buffer.byteLength(await s3.getText(key))),
    );
    const lineBytes =
      Buffer.byteLength((await s3.getText(manifest.results[0] ?? '')).split('\n')[0] ?? '') + 1;
    for (const size of sizes.slice(0, -1)) {
      expect(size).toBeGreaterThanOrEqual(2_000);
      expect(size).toBeLessThan(2_000 + lineBytes);
    }
    expect((await idCounts(manifest)).size).toBe(40);
  });

  it('round-trips gzip parts', async () => {
    const jobId = nextJobId();
    const engine = fakeEngine(everyThird);
    const manifest = await runJob(
      { jobId, items: urls(12) },
      { store: storeConfig({ gzip: true }), startFanOut: engine.startFanOut },
    );
    expect(manifest.results[0]).toMatch(/results\/0001-00000\.jsonl\.gz$/);
    expect(manifest.errors[0]).toMatch(/errors\/0001-00000\.jsonl\.gz$/);
    expect(await readLines(manifest.results)).toHaveLength(8);
    expect((await idCounts(manifest)).size).toBe(12);
  });

  it('returns a complete job without fetching anything again', async () => {
    const jobId = nextJobId();
    const engine = fakeEngine();
    const first = await runJob(
      { jobId, items: urls(5) },
      { store: storeConfig(), startFanOut: engine.startFanOut },
    );
    const again = await runJob(
      { jobId, items: urls(5) },
      { store: storeConfig(), startFanOut: engine.startFanOut },
    );
    expect(engine.fetched).toHaveLength(5);
    expect(again).toEqual(first);
  });

  it('after a fatal error, counts each source line once and records the bad lines the intake never reached', async () => {
    const jobId = nextJobId();
    const key = `sources/${jobId}.txt`;
    const lines = [
      'ftp://bad.example/1',
      'http://upstream.test/1',
      'ftp://bad.example/2',
      'http://upstream.test/2',
    ];
    await s3.client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: `${lines.join('\n')}\n` }),
    );
    // Any non-S3 fatal error mid-run: the engine throws at its second item, before the second bad line.
    const engine = fakeEngine((_item, index) => {
      if (index === 1) throw new Error('engine blew up');
      return 'ok';
    });
    const manifest = await runJob(
      { jobId, source: { s3: `s3://${s3.bucket}/${key}` } },
      { store: storeConfig(), startFanOut: engine.startFanOut },
    );
    expect(manifest.status).toBe('failed');
    expect(manifest.counts.total).toBe(4);
    const ids = await idCounts(manifest);
    expect([...ids.values()].every((count) => count === 1)).toBe(true);
    expect(ids.size).toBe(4);
    const pending = manifest.pending ? (await s3.getText(manifest.pending)).trim().split('\n') : [];
    expect(manifest.counts.pending).toBe(pending.length);
    const errors = await readLines(manifest.errors);
    expect(errors.map((line) => (line.error as { code: string }).code)).toEqual([
      'INVALID_URL',
      'INVALID_URL',
    ]);
  });

  it("records a value JSON cannot hold as that item's TRANSFORM_ERROR; the job completes", async () => {
    const engine = fakeEngine();
    // A BigInt crosses the worker boundary intact, and JSON.stringify throws on it.
    const withBigInt: typeof engine.startFanOut = (items, options, runtime) => {
      const run = engine.startFanOut(items, options, runtime);
      async function* outcomes() {
        let index = 0;
        for await (const outcome of run.outcomes) {
          yield index++ === 3 && outcome.ok ? { ...outcome, value: { big: 2n ** 70n } } : outcome;
        }
      }
      return { ...run, outcomes: outcomes() };
    };
    const manifest = await runJob(
      { jobId: nextJobId(), items: urls(10) },
      { store: storeConfig(), startFanOut: withBigInt },
    );
    expect(manifest).toMatchObject({ status: 'complete', counts: { total: 10, succeeded: 9, failed: 1 } });
    const [error] = await readLines(manifest.errors);
    expect(error).toMatchObject({
      error: { code: 'TRANSFORM_ERROR', message: expect.stringMatching(/not JSON.*BigInt/) },
      attempts: 1,
    });
  });

  it('resumes a partial job: pending items only, then every item exactly once', async () => {
    const jobId = nextJobId();
    const store = storeConfig();
    const firstEngine = fakeEngine((_item, index) => (index >= 6 ? 'pending' : everyThird(_item, index)));
    const partial = await runJob({ jobId, items: urls(10) }, { store, startFanOut: firstEngine.startFanOut });
    expect(partial.status).toBe('partial');
    expect(partial.counts).toMatchObject({ total: 10, succeeded: 4, failed: 2, pending: 4 });
    expect(partial.pending).toBe(`jobs/${jobId}/pending.jsonl`);
    const pendingLines = await readLines([partial.pending ?? '']);
    expect(pendingLines.map((line) => line.url)).toEqual(urls(4, 6));
    expect(Object.keys(pendingLines[0] ?? {})).toEqual(['id', 'url']);

    const secondEngine = fakeEngine();
    const complete = await resumeJob(jobId, { store, startFanOut: secondEngine.startFanOut });
    expect(secondEngine.fetched).toHaveLength(4);
    expect(complete.status).toBe('complete');
    expect(complete.runs).toBe(2);
    expect(complete.startedAt).toBe(partial.startedAt);
    expect(complete.counts).toEqual({ total: 10, succeeded: 8, failed: 2, pending: 0, duplicates: 0 });
    const counts = await idCounts(complete);
    expect(counts.size).toBe(10);
    expect([...counts.values()].every((count) => count === 1)).toBe(true);
    expect(await s3.listKeys(`jobs/${jobId}/runs/`)).toEqual([
      `jobs/${jobId}/runs/0001.json`,
      `jobs/${jobId}/runs/0002.json`,
    ]);
    expect(JSON.parse(await s3.getText(`jobs/${jobId}/job.json`))).toMatchObject({
      jobId,
      items: urls(10).map((url) => ({ url })),
    });
  });

  it('records a fail-fast abort as a failed manifest with its error, and does not run it again', async () => {
    const jobId = nextJobId();
    const engine = fakeEngine((_item, index) => (index === 0 ? 'fail' : 'aborted'));
    const manifest = await runJob(
      { jobId, items: urls(4) },
      { store: storeConfig(), startFanOut: engine.startFanOut },
    );
    expect(manifest.status).toBe('failed');
    expect(manifest.error).toEqual({ code: 'ABORTED', message: 'aborted by fail-fast' });
    expect(manifest.counts).toMatchObject({ total: 4, failed: 4, pending: 0 });
    const again = await runJob(
      { jobId, items: urls(4) },
      { store: storeConfig(), startFanOut: engine.startFanOut },
    );
    expect(again).toEqual(manifest);
    expect(engine.fetched).toHaveLength(4);
  });

  it('finishes a resumed run from a dead run: its unlisted parts are debris, removed and ignored', async () => {
    const jobId = nextJobId();
    const store = storeConfig();
    const layout = storeLayout(store, jobId);
    // A dead run 1: a checkpoint listing one part, plus a part it never listed.
    await runJob(
      { jobId, items: urls(3) },
      { store, startFanOut: fakeEngine((_i, n) => (n === 0 ? 'ok' : 'pending')).startFanOut },
    );
    const debris = new StreamedObject({
      layout,
      key: `jobs/${jobId}/results/0001-00007.jsonl`,
      createOnly: true,
      token: 't',
    });
    await debris.write(JSON.stringify({ id: 'zz', url: 'http://upstream.test/x' }));
    await debris.close();
    const engine = fakeEngine();
    const manifest = await runJob({ jobId, items: urls(3) }, { store, startFanOut: engine.startFanOut });
    expect(manifest.status).toBe('complete');
    expect(engine.fetched).toHaveLength(2);
    expect(await s3.listKeys(`jobs/${jobId}/results/`)).toEqual([...manifest.results].sort());
    expect((await idCounts(manifest)).size).toBe(3);
  });
});

describe('streamed objects', () => {
  it.each([false, true])(
    'stream a multipart object of several chunks byte for byte (gzip %s)',
    async (gzip) => {
      const layout = storeLayout(storeConfig({ gzip }), nextJobId());
      const key = `${layout.base}/results/0001-00000.jsonl${gzip ? '.gz' : ''}`;
      const part = new StreamedObject({ layout, key, createOnly: true, token: 't' });
      const lines: string[] = [];
      // ~12 MiB that gzip cannot shrink much (random base64, multi-byte UTF-8): 5 MiB chunks, 3 parts.
      for (let index = 0; index < 1_536; index++) {
        const line = JSON.stringify({ id: `i${index}`, value: `ü€${randomBytes(3_000).toString('base64')}` });
        lines.push(line);
        await part.write(line);
      }
      await part.close();
      expect(part.lines).toBe(1_536);
      expect(part.bytes).toBe(Buffer.byteLength(`${lines.join('\n')}\n`));
      expect(await s3.getText(key)).toBe(`${lines.join('\n')}\n`);
      expect(await openUploads()).toBe(0);
    },
  );

  it('writes a small object as one PUT, and an empty one as an empty object', async () => {
    const layout = storeLayout(storeConfig(), nextJobId());
    const small = new StreamedObject({ layout, key: `${layout.base}/a.jsonl`, createOnly: true, token: 't' });
    await small.write('{"id":"a"}');
    await small.close();
    const empty = new StreamedObject({ layout, key: `${layout.base}/b.jsonl`, createOnly: true, token: 't' });
    await empty.close();
    expect(await s3.getText(`${layout.base}/a.jsonl`)).toBe('{"id":"a"}\n');
    expect(await s3.getText(`${layout.base}/b.jsonl`)).toBe('');
  });
});

describe('streamed parts on failure', () => {
  let restore: (() => void) | undefined;
  afterEach(() => {
    restore?.();
    restore = undefined;
  });

  it('aborts the multipart upload on S3 when an upload part fails', async () => {
    const layout = storeLayout(storeConfig(), nextJobId());
    restore = injectS3Answers(s3.client, (command) =>
      command === 'UploadPartCommand' ? { status: 400, code: 'InvalidPart', retryable: false } : null,
    );
    const part = new StreamedObject({
      layout,
      key: `${layout.base}/results/0001-00000.jsonl`,
      createOnly: true,
      token: 't',
    });
    const line = 'y'.repeat(64 * 1024);
    let failed: unknown;
    try {
      // 6 MiB: over the 5 MiB chunk, so a multipart upload is created.
      for (let index = 0; index < 96; index++) await part.write(line);
      await part.close();
    } catch (error) {
      failed = error;
    }
    expect(failed).toBeDefined();
    await part.abort();
    expect(await openUploads()).toBe(0);
    expect(await s3.listKeys(`${layout.base}/`)).toEqual([]);
  });

  it('aborts an upload in progress on S3 when the part is abandoned (Upload.abort)', async () => {
    const layout = storeLayout(storeConfig(), nextJobId());
    const part = new StreamedObject({
      layout,
      key: `${layout.base}/results/0001-00000.jsonl`,
      createOnly: true,
      token: 't',
    });
    const line = 'z'.repeat(64 * 1024);
    for (let index = 0; index < 100; index++) await part.write(line);
    // Let the first 5 MiB chunk go out so S3 holds an open multipart upload.
    for (let tries = 0; tries < 200 && (await openUploads()) === 0; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(await openUploads()).toBe(1);
    await part.abort();
    expect(await openUploads()).toBe(0);
    expect(await s3.listKeys(`${layout.base}/`)).toEqual([]);
  });

  it('bounds close() by its signal when S3 stops answering a part; abort() then cleans up', async () => {
    const layout = storeLayout(storeConfig(), nextJobId());
    // Test-only middleware: UploadPart waits until released, as over a stalled connection.
    let release = (): void => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let stalled = (): void => undefined;
    const stalledOnce = new Promise<void>((resolve) => {
      stalled = resolve;
    });
    s3.client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'UploadPartCommand') {
          stalled();
          await held;
        }
        return next(args);
      },
      { step: 'deserialize', priority: 'low', name: 'testStalledUploadPart' },
    );
    restore = () => {
      release();
      s3.client.middlewareStack.remove('testStalledUploadPart');
    };
    const part = new StreamedObject({
      layout,
      key: `${layout.base}/results/0001-00000.jsonl`,
      createOnly: true,
      token: 't',
    });
    const controller = new AbortController();
    const closing = (async () => {
      const line = 'y'.repeat(64 * 1024);
      // 6 MiB: over the 5 MiB chunk, so a multipart upload is created.
      for (let index = 0; index < 96; index++) await part.write(line);
      await part.close(controller.signal);
    })();
    await stalledOnce;
    controller.abort(new Error('out of time'));
    await expect(closing).rejects.toThrow('out of time');
    restore();
    restore = undefined;
    await part.abort();
    expect(await openUploads()).toBe(0);
  });

  it('retries a 503 SlowDown and still lands every item once', async () => {
    const jobId = nextJobId();
    let slowDowns = 0;
    restore = injectS3Answers(s3.client, (command) => {
      if (command !== 'PutObjectCommand' || slowDowns >= 2) return null;
      slowDowns++;
      return { status: 503, code: 'SlowDown', retryable: true };
    });
    const manifest = await runJob(
      { jobId, items: urls(6) },
      { store: storeConfig(), startFanOut: fakeEngine().startFanOut },
    );
    expect(slowDowns).toBe(2);
    expect(manifest.status).toBe('complete');
    expect((await idCounts(manifest)).size).toBe(6);
  });

  it('leaves the last checkpoint standing when S3 keeps failing, and a rerun completes the job', async () => {
    const jobId = nextJobId();
    const store = storeConfig({ partBytes: 200 });
    let puts = 0;
    restore = injectS3Answers(s3.client, (command) => {
      if (command === 'PutObjectCommand' && ++puts > 8)
        return { status: 500, code: 'InternalError', retryable: false };
      return null;
    });
    await expect(
      runJob({ jobId, items: urls(20) }, { store, startFanOut: fakeEngine().startFanOut }),
    ).rejects.toThrow();
    restore();
    restore = undefined;
    // The dead run's checkpoint reads as `running` until its heartbeat is older than the lease, then partial.
    expect((await readManifest(store, jobId))?.status).toBe('running');
    const later = { now: () => Date.now() + 11_000, sleep: async () => undefined };
    expect((await readManifest(store, jobId, undefined, later))?.status).toBe('partial');
    const manifest = await runJob(
      { jobId, items: urls(20) },
      { store, startFanOut: fakeEngine().startFanOut, leaseMs: 0 },
    );
    expect(manifest.status).toBe('complete');
    const counts = await idCounts(manifest);
    expect(counts.size).toBe(20);
    expect([...counts.values()].every((count) => count === 1)).toBe(true);
  });
});
