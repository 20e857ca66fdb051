// The runner handler through middy with the sample events, against the local upstream and fauxqs.
import { describe, expect, it } from 'vitest';
import { readManifest } from '../../functions/core/index.ts';
import type { HandlerConfig } from '../../functions/handlers/config.ts';
import { createRunJobHandler, type RunSummary } from '../../functions/handlers/runner.ts';
import {
  asRunSummary,
  type CapturedShell,
  capturedShell,
  createFakeContext,
  hitClock,
  loadEvent,
  type RecordingDispatcher,
  recordingDispatcher,
  testConfig,
} from '../support/lambda.ts';
import { idsInParts } from '../support/s3.ts';
import { useLocalWorld } from '../support/world.ts';

const world = useLocalWorld();

interface Harness {
  invoke(event: unknown, remainingMs?: number): Promise<RunSummary>;
  dispatcher: RecordingDispatcher;
  captured: CapturedShell;
}

function runner(overrides: Partial<HandlerConfig> = {}, clock?: ReturnType<typeof hitClock>): Harness {
  const dispatcher = recordingDispatcher();
  const captured = capturedShell();
  const handler = createRunJobHandler({
    config: testConfig({ bucket: world.s3.bucket, ...overrides }),
    s3: world.s3.client,
    dispatcher,
    shell: captured.shell,
    transformRunner: 'inline',
    ...(clock ? { clock } : {}),
  });
  return {
    dispatcher,
    captured,
    invoke: (event, remainingMs = 120_000) =>
      handler(event, createFakeContext({ remainingMs, ...(clock ? { now: clock.now } : {}) })).then(
        asRunSummary,
      ),
  };
}

/** Every item id in the parts the manifest lists (results and errors), and the pending ones. */
async function idsOf(jobId: string): Promise<{ finished: string[]; pending: string[] }> {
  const manifest = await readManifest(
    { client: world.s3.client, bucket: world.s3.bucket, prefix: 'jobs' },
    jobId,
  );
  if (!manifest) throw new Error(`no manifest for ${jobId}`);
  const finished = await idsInParts(world.s3.getText, [...manifest.results, ...manifest.errors]);
  const pending = await idsInParts(world.s3.getText, manifest.pending ? [manifest.pending] : []);
  return { finished, pending };
}

function itemsJob(jobId: string, count: number, query = ''): Record<string, unknown> {
  return {
    jobId,
    items: Array.from({ length: count }, (_, index) => `${world.upstream.url}item/${index}${query}`),
    options: { concurrency: 8, retries: { maxAttempts: 1 } },
  };
}

describe('runner handler', () => {
  it('runs a direct job to a complete manifest and returns its summary', async () => {
    const { invoke, dispatcher } = runner();
    const summary = await invoke(loadEvent('direct.json', world.upstream.url));
    expect(summary).toMatchObject({
      jobId: 'direct-demo-0001',
      status: 'complete',
      counts: { total: 10, succeeded: 10, failed: 0, pending: 0 },
      manifest: 'jobs/direct-demo-0001/manifest.json',
    });
    expect(world.upstream.hits()).toBe(10);
    expect(dispatcher.events).toEqual([]);
  });

  it('names a scheduled job by its rule and time, and a redelivery fetches nothing twice', async () => {
    const { invoke } = runner();
    const event = loadEvent('schedule.json', world.upstream.url);
    const first = await invoke(event);
    expect(first.jobId).toBe('fanout-nightly-prices-20261125T020000Z');
    expect(first.status).toBe('complete');
    const hitsAfterFirst = world.upstream.hits();
    expect(hitsAfterFirst).toBe(5);
    const again = await invoke(event);
    expect(again).toEqual(first);
    expect(world.upstream.hits()).toBe(hitsAfterFirst);
  });

  it('makes the next scheduled time another job', async () => {
    const { invoke } = runner();
    const event = { ...loadEvent('schedule.json', world.upstream.url), time: '2026-11-26T02:00:00Z' };
    const summary = await invoke(event);
    expect(summary.jobId).toBe('fanout-nightly-prices-20261126T020000Z');
    expect(world.upstream.hits()).toBe(5);
  });

  it('stops at the deadline with a partial manifest, asks for a continuation, and the continuation finishes the job', async () => {
    const clock = hitClock(() => world.upstream.hits(), 100);
    const { invoke, dispatcher } = runner({ deadlineMarginMs: 3_000 }, clock);
    // 3 s of margin plus 2 s of fetching: about 20 of the 60 items at 100 ms per upstream hit.
    const first = await invoke(itemsJob('deadline-60', 60), 5_000);
    expect(first.status).toBe('partial');
    expect(first.counts.pending).toBeGreaterThan(0);
    expect(first.counts.succeeded).toBeGreaterThan(0);
    expect(first.continuation).toEqual({ requested: 1 });
    expect(dispatcher.events).toEqual([{ jobId: 'deadline-60', resume: true, continuation: 1 }]);

    const partialIds = await idsOf('deadline-60');
    expect(partialIds.finished.length + partialIds.pending.length).toBe(60);

    const last = await invoke(dispatcher.events[0], 120_000);
    expect(last).toMatchObject({ status: 'complete', counts: { total: 60, succeeded: 60, pending: 0 } });
    expect(last.continuation).toBeUndefined();
    const { finished, pending } = await idsOf('deadline-60');
    expect(pending).toEqual([]);
    expect(finished).toHaveLength(60);
    expect(new Set(finished).size).toBe(60);
  });

  it('leaves the job partial once FANOUT_MAX_CONTINUATIONS is spent, with an error log and a metric', async () => {
    const clock = hitClock(() => world.upstream.hits(), 100);
    const { invoke, dispatcher, captured } = runner({ deadlineMarginMs: 3_000, maxContinuations: 0 }, clock);
    const summary = await invoke(itemsJob('no-continuations', 40), 4_000);
    expect(summary.status).toBe('partial');
    expect(summary.continuation).toEqual({ exhausted: true, maxContinuations: 0 });
    expect(dispatcher.events).toEqual([]);
    expect(captured.logs).toContainEqual(
      expect.objectContaining({ level: 'ERROR', code: 'CONTINUATIONS_EXHAUSTED', jobId: 'no-continuations' }),
    );
    expect(JSON.stringify(captured.metrics)).toContain('"ContinuationsExhausted":1');
  });

  it('a redelivered continuation whose successor is already requested does not run beside it', async () => {
    const clock = hitClock(() => world.upstream.hits(), 100);
    const { invoke, dispatcher } = runner({ deadlineMarginMs: 3_000 }, clock);
    await invoke(itemsJob('redelivered-continuation', 60), 4_000);
    const continuation = dispatcher.events[0];
    const second = await invoke(continuation, 4_000);
    expect(second.continuation).toEqual({ requested: 2 });
    const hits = world.upstream.hits();
    const redelivered = await invoke(continuation, 4_000);
    expect(world.upstream.hits()).toBe(hits);
    expect(redelivered.status).toBe('partial');
    expect(dispatcher.events).toHaveLength(2);
  });

  it('logs each failed item once with its code, and the job id on every line', async () => {
    const { invoke, captured } = runner();
    const job = itemsJob('failing-items', 3, '?status=404');
    const summary = await invoke(job);
    expect(summary.counts).toMatchObject({ failed: 3, succeeded: 0 });
    const failures = captured.logs.filter((line) => line.message === 'item failed');
    expect(failures).toHaveLength(3);
    expect(new Set(failures.map((line) => line.itemId)).size).toBe(3);
    for (const line of failures) expect(line).toMatchObject({ code: 'HTTP_STATUS', status: 404 });
    for (const line of captured.logs) expect(line.jobId).toBe('failing-items');
  });

  it('flushes EMF metrics once per invocation with the run figures', async () => {
    const { invoke, captured } = runner();
    await invoke(itemsJob('metrics-job', 4));
    expect(captured.metrics).toHaveLength(1);
    const blob = captured.metrics[0] as Record<string, unknown>;
    expect(blob).toMatchObject({ ItemsSucceeded: 4, ItemsFailed: 0, ItemsPending: 0, Retries: 0 });
    expect(blob._aws).toBeDefined();
    expect(typeof blob.FetchLatencyP95).toBe('number');
  });

  it('fails an invalid direct job with the path of each problem, fetching nothing', async () => {
    const { invoke } = runner();
    await expect(invoke({ items: ['ftp://example.com/x'] })).rejects.toMatchObject({
      code: 'INVALID_JOB',
      message: expect.stringContaining('items[0]'),
    });
    expect(world.upstream.hits()).toBe(0);
  });
});
