// redriveJob against the embedded S3 and a local upstream: recovered items move to results, every id stays listed once.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFanOut } from '../../functions/core/engine.ts';
import { redriveJob } from '../../functions/core/redrive.ts';
import { readManifest, runJob } from '../../functions/core/run.ts';
import type { Manifest } from '../../functions/core/types.ts';
import { startTestS3, type TestS3 } from '../support/s3.ts';
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

/** Small parts, so a redrive has several error parts to copy and roll. */
const runtime = (extra: Record<string, unknown> = {}) => ({
  store: { client: s3.client, bucket: s3.bucket, partBytes: 400 },
  allow: ['private'] as string[],
  ...extra,
});

interface Line {
  id: string;
  url: string;
  error?: { code: string };
}

/** Every line of every part the manifest lists (and pending), by kind. */
async function listed(manifest: Manifest): Promise<{ results: Line[]; errors: Line[]; pending: Line[] }> {
  const read = async (keys: readonly string[]): Promise<Line[]> => {
    const lines: Line[] = [];
    for (const key of keys) {
      for (const line of (await s3.getText(key)).split('\n')) if (line) lines.push(JSON.parse(line) as Line);
    }
    return lines;
  };
  return {
    results: await read(manifest.results),
    errors: await read(manifest.errors),
    pending: await read(manifest.pending ? [manifest.pending] : []),
  };
}

async function expectEachIdOnce(manifest: Manifest): Promise<void> {
  const { results, errors, pending } = await listed(manifest);
  const ids = [...results, ...errors, ...pending].map((line) => line.id);
  expect(new Set(ids).size).toBe(ids.length);
  expect(ids).toHaveLength(manifest.counts.total);
  expect(results).toHaveLength(manifest.counts.succeeded);
  expect(errors).toHaveLength(manifest.counts.failed);
}

const urls = (path: string, count: number, query = ''): string[] =>
  Array.from({ length: count }, (_, index) => `${upstream.url}${path}/${index}${query}`);

describe('redriveJob', () => {
  it('moves items that now succeed from errors to results and keeps every id once', async () => {
    const items = [
      ...urls('ok', 20),
      ...urls('flaky', 10, '?failFirst=1&failStatus=500'),
      ...urls('gone', 5, '?status=404'),
    ];
    const job = { jobId: 'redrive-all', items, options: { retries: { maxAttempts: 1 } } };
    const first = await runJob(job, runtime());
    expect(first.counts).toMatchObject({ total: 35, succeeded: 20, failed: 15, pending: 0 });
    expect(first.errors.length).toBeGreaterThan(1);

    const manifest = await redriveJob('redrive-all', {}, runtime());
    expect(manifest.status).toBe('complete');
    expect(manifest.counts).toEqual({ total: 35, succeeded: 30, failed: 5, pending: 0, duplicates: 0 });
    expect(manifest.redriven).toBe(15);
    expect(manifest.runs).toBe(first.runs + 1);
    await expectEachIdOnce(manifest);
    const { results, errors } = await listed(manifest);
    expect(results.filter((line) => line.url.includes('/flaky/'))).toHaveLength(10);
    expect(errors.every((line) => line.url.includes('/gone/'))).toBe(true);
    // Only failed items were fetched again.
    expect(upstream.hits()).toBe(20 + 2 * 15);
    expect(await readManifest(runtime().store, 'redrive-all')).toEqual(manifest);

    // The job stays complete: running it again fetches nothing.
    const again = await runJob(job, runtime());
    expect(again).toEqual(manifest);
    expect(upstream.hits()).toBe(50);
  });

  it('re-runs only the items that failed with the given codes', async () => {
    const items = [...urls('reset', 6, '?failFirst=1&failStatus=reset'), ...urls('gone', 4, '?status=404')];
    await runJob({ jobId: 'redrive-codes', items, options: { retries: { maxAttempts: 1 } } }, runtime());
    expect(upstream.hits()).toBe(10);
    const manifest = await redriveJob('redrive-codes', { codes: ['CONNECTION'] }, runtime());
    expect(manifest.counts).toMatchObject({ total: 10, succeeded: 6, failed: 4, pending: 0 });
    expect(manifest.redriven).toBe(6);
    expect(upstream.hits()).toBe(16);
    await expectEachIdOnce(manifest);
    const { errors } = await listed(manifest);
    expect(errors.map((line) => line.error?.code)).toEqual([
      'HTTP_STATUS',
      'HTTP_STATUS',
      'HTTP_STATUS',
      'HTTP_STATUS',
    ]);

    // Nothing left with that code: no new run, the manifest as it was.
    const unchanged = await redriveJob('redrive-codes', { codes: ['CONNECTION'] }, runtime());
    expect(unchanged).toEqual(manifest);
  });

  it('counts redriven items across redrives and keeps items that fail again listed once', async () => {
    const items = [...urls('gone', 3, '?status=503'), ...urls('ok', 3)];
    const job = { jobId: 'redrive-twice', items, options: { retries: { maxAttempts: 1 } } };
    await runJob(job, runtime());
    await redriveJob('redrive-twice', {}, runtime());
    const manifest = await redriveJob('redrive-twice', { codes: ['HTTP_STATUS'] }, runtime());
    expect(manifest.redriven).toBe(6);
    expect(manifest.counts).toMatchObject({ succeeded: 3, failed: 3 });
    await expectEachIdOnce(manifest);
  });

  it('leaves items it did not finish (cancelled) with their old error line', async () => {
    const items = [
      ...urls('flaky', 4, '?failFirst=1&failStatus=500'),
      // Never answers in time: TIMEOUT_HEADERS in the first run, still in flight when the redrive is cancelled.
      ...urls('slow', 4, '?latency=60000'),
    ];
    const options = { retries: { maxAttempts: 1 }, timeouts: { headersMs: 1_000 } };
    await runJob({ jobId: 'redrive-cancel', items, options }, runtime());
    // Cancel the moment the 4th item succeeds, while the slow ones are in flight (an outcome, not a time).
    const cancel = new AbortController();
    const engine: typeof startFanOut = (source, jobOptions, engineRuntime) => {
      const run = startFanOut(source, jobOptions, engineRuntime);
      let succeeded = 0;
      const outcomes = (async function* () {
        for await (const outcome of run.outcomes) {
          if (outcome.ok && ++succeeded === 4) cancel.abort(new Error('cancelled by the test'));
          yield outcome;
        }
      })();
      return { ...run, outcomes };
    };
    const manifest = await redriveJob(
      'redrive-cancel',
      {},
      runtime({ signal: cancel.signal, startFanOut: engine }),
    );
    expect(cancel.signal.aborted).toBe(true);
    expect(manifest.counts).toMatchObject({ total: 8, succeeded: 4, failed: 4, pending: 0 });
    expect(manifest.redriven).toBe(4);
    expect(manifest.status).toBe('complete');
    await expectEachIdOnce(manifest);
    const { errors } = await listed(manifest);
    expect(errors.map((line) => [line.url.includes('/slow/'), line.error?.code])).toEqual(
      Array.from({ length: 4 }, () => [true, 'TIMEOUT_HEADERS']),
    );
  });

  it('commits its final manifest when a cancel lands during the final writes (they have their own deadline)', async () => {
    const items = [...urls('flaky', 4, '?failFirst=1&failStatus=500'), ...urls('ok', 2)];
    await runJob(
      { jobId: 'redrive-late-cancel', items, options: { retries: { maxAttempts: 1 } } },
      runtime(),
    );
    const cancel = new AbortController();
    // Test-only middleware: the cancel fires as the final manifest write goes out.
    s3.client.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Key?: string; Body?: unknown };
        const final =
          context.commandName === 'PutObjectCommand' &&
          input.Key?.endsWith('redrive-late-cancel/manifest.json') &&
          !String(input.Body).includes('"status": "running"');
        if (final) cancel.abort(new Error('cancelled during the final writes'));
        return next(args);
      },
      { step: 'initialize', name: 'testCancelOnFinalWrite' },
    );
    let manifest: Manifest;
    try {
      manifest = await redriveJob('redrive-late-cancel', {}, runtime({ signal: cancel.signal }));
    } finally {
      s3.client.middlewareStack.remove('testCancelOnFinalWrite');
    }
    expect(cancel.signal.aborted).toBe(true);
    expect(manifest).toMatchObject({ status: 'complete', counts: { total: 6, succeeded: 6, failed: 0 } });
    expect((await readManifest(runtime().store, 'redrive-late-cancel'))?.status).toBe('complete');
    await expectEachIdOnce(manifest);
  });

  it('gives the job back unchanged when it fails midway, and a later redrive still lists each id once', async () => {
    const items = [...urls('flaky', 6, '?failFirst=1&failStatus=500'), ...urls('ok', 2)];
    const before = await runJob(
      { jobId: 'redrive-crash', items, options: { retries: { maxAttempts: 1 } } },
      runtime(),
    );
    // The engine dies after 3 outcomes were written to this run's parts.
    const dying: typeof startFanOut = (source, jobOptions, engineRuntime) => {
      const run = startFanOut(source, jobOptions, engineRuntime);
      let seen = 0;
      const outcomes = (async function* () {
        for await (const outcome of run.outcomes) {
          if (++seen > 3) throw new Error('engine died');
          yield outcome;
        }
      })();
      return { ...run, outcomes };
    };
    await expect(redriveJob('redrive-crash', {}, runtime({ startFanOut: dying }))).rejects.toThrow(
      'engine died',
    );
    const restored = await readManifest(runtime().store, 'redrive-crash');
    expect(restored).toMatchObject({
      status: 'complete',
      counts: before.counts,
      results: before.results,
      errors: before.errors,
    });
    await expectEachIdOnce(restored as Manifest);

    const manifest = await redriveJob('redrive-crash', {}, runtime());
    expect(manifest.counts).toMatchObject({ total: 8, succeeded: 8, failed: 0 });
    expect(manifest.errors).toEqual([]);
    await expectEachIdOnce(manifest);
  });

  it('refuses a job that has no manifest', async () => {
    await expect(redriveJob('never-ran', {}, runtime())).rejects.toMatchObject({ code: 'UNKNOWN_JOB' });
  });
});
