// A run cancelled through its runtime signal mid-run: parts flushed, a partial manifest, then a rerun completes.
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFanOut } from '../../functions/core/engine.ts';
import { readManifest, runJob } from '../../functions/core/run.ts';
import type { Manifest, Outcome } from '../../functions/core/types.ts';
import { fakeEngine, urls } from '../support/fake-engine.ts';
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

const store = () => ({ client: s3.client, bucket: s3.bucket });

/** Every id across the listed results and errors parts plus pending, with how often it appears. */
async function idCounts(manifest: Manifest): Promise<Map<string, number>> {
  return countIds(await idsInParts(s3.getText, listedKeys(manifest)));
}

interface Interrupt {
  startFanOut: typeof startFanOut;
  /** True once the store read the engine's outcomes to their end (it did not break out after the cancel). */
  drained: boolean;
}

/** The engine as given, with `controller` aborted once `after` outcomes have come out: a Ctrl-C mid-run. */
function abortAfter(engine: typeof startFanOut, after: number, controller: AbortController): Interrupt {
  const interrupt: Interrupt = {
    drained: false,
    startFanOut: (items, options, runtime) => {
      const run = engine(items, options, runtime);
      async function* tapped(): AsyncGenerator<Outcome> {
        let seen = 0;
        for await (const outcome of run.outcomes) {
          if (++seen === after) controller.abort(new Error('interrupted by the test'));
          yield outcome;
        }
        interrupt.drained = true;
      }
      return { ...run, outcomes: tapped() };
    },
  };
  return interrupt;
}

function expectEachOnce(counts: Map<string, number>, total: number): void {
  expect(counts.size).toBe(total);
  expect([...counts.values()].every((count) => count === 1)).toBe(true);
}

describe('a run cancelled through its runtime signal', () => {
  it('flushes its parts and writes pending and a partial manifest (scripted engine), then a rerun completes', async () => {
    const jobId = 'abort-scripted';
    const items = urls(50);
    const controller = new AbortController();
    const engine = fakeEngine();
    const interrupt = abortAfter(engine.startFanOut, 20, controller);
    const partial = await runJob(
      { jobId, items },
      { store: store(), signal: controller.signal, startFanOut: interrupt.startFanOut },
    );
    // Every pending outcome was taken and written, not dropped by breaking out of the engine.
    expect(interrupt.drained).toBe(true);
    expect(partial.status).toBe('partial');
    expect(partial.counts.pending).toBeGreaterThan(0);
    expect(partial.counts.succeeded).toBeGreaterThanOrEqual(19);
    expect(partial.counts.succeeded + partial.counts.failed + partial.counts.pending).toBe(50);
    expect(partial.pending).toBe(`jobs/${jobId}/pending.jsonl`);
    expectEachOnce(await idCounts(partial), 50);
    expect((await readManifest(store(), jobId))?.status).toBe('partial');

    const complete = await runJob({ jobId, items }, { store: store(), startFanOut: engine.startFanOut });
    expect(complete).toMatchObject({ status: 'complete', runs: 2, counts: { total: 50, succeeded: 50 } });
    expectEachOnce(await idCounts(complete), 50);
    // Nothing finished in the first run was fetched again.
    expect(engine.fetched).toHaveLength(50);
  });

  it('does the same with the real engine and items in flight: they become pending, none is lost', async () => {
    upstream.reset();
    const jobId = 'abort-engine';
    const items = Array.from({ length: 40 }, (_, index) => `${upstream.url}item/${index}?latency=40`);
    const options = { concurrency: 4, perHost: 4 };
    const controller = new AbortController();
    const interrupt = abortAfter(startFanOut, 6, controller);
    const partial = await runJob(
      { jobId, items, options },
      { store: store(), allow: ['private'], signal: controller.signal, startFanOut: interrupt.startFanOut },
    );
    expect(interrupt.drained).toBe(true);
    expect(partial.status).toBe('partial');
    expect(partial.counts.pending).toBeGreaterThan(0);
    expect(partial.counts.succeeded + partial.counts.pending).toBe(40);
    expectEachOnce(await idCounts(partial), 40);

    const complete = await runJob({ jobId, items, options }, { store: store(), allow: ['private'] });
    expect(complete).toMatchObject({ status: 'complete', runs: 2, counts: { total: 40, succeeded: 40 } });
    expectEachOnce(await idCounts(complete), 40);
  });

  it('drains an S3 source into pending after the cancel, so the partial manifest counts every item', async () => {
    const jobId = 'abort-source';
    const lines = Array.from({ length: 60 }, (_, index) => `${upstream.url}item/${index}?latency=20&k=src`);
    await s3.client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: 'sources/abort.txt', Body: `${lines.join('\n')}\n` }),
    );
    const job = { jobId, source: { s3: `s3://${s3.bucket}/sources/abort.txt` }, options: { concurrency: 4 } };
    const controller = new AbortController();
    const interrupt = abortAfter(startFanOut, 8, controller);
    const partial = await runJob(job, {
      store: store(),
      allow: ['private'],
      signal: controller.signal,
      startFanOut: interrupt.startFanOut,
    });
    expect(interrupt.drained).toBe(true);
    expect(partial.status).toBe('partial');
    expect(partial.counts.total).toBe(60);
    expectEachOnce(await idCounts(partial), 60);

    const complete = await runJob(job, { store: store(), allow: ['private'] });
    expect(complete).toMatchObject({ status: 'complete', counts: { total: 60, succeeded: 60, pending: 0 } });
    expectEachOnce(await idCounts(complete), 60);
  });
});
