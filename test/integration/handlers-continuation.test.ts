// The must-show: 1,000 items through the runner with time for about a third per invocation, then continuations.
import { expect, it } from 'vitest';
import { readManifest } from '../../functions/core/index.ts';
import { createInProcessDispatcher, type RunnerDispatcher } from '../../functions/handlers/dispatch.ts';
import { createRunJobHandler, type RunSummary } from '../../functions/handlers/runner.ts';
import type { DispatchEvent } from '../../functions/handlers/runner-events.ts';
import {
  asRunSummary,
  capturedShell,
  createFakeContext,
  hitClock,
  recordingDispatcher,
  testConfig,
} from '../support/lambda.ts';
import { countIds, idsInParts } from '../support/s3.ts';
import { useLocalWorld } from '../support/world.ts';

const ITEMS = 1_000;
const MS_PER_HIT = 100;
const MARGIN_MS = 3_000;
/** Every invocation gets the margin plus time for a third of the items, counted in upstream hits. */
const REMAINING_MS = MARGIN_MS + Math.round(ITEMS / 3) * MS_PER_HIT;

const world = useLocalWorld();

/** The runner handler on the test S3, with the margin and at most `maxContinuations` per chain. */
function runner(
  maxContinuations: number,
  dispatcher: RunnerDispatcher,
  clock: ReturnType<typeof hitClock>,
): ReturnType<typeof createRunJobHandler> {
  return createRunJobHandler({
    config: testConfig({ bucket: world.s3.bucket, deadlineMarginMs: MARGIN_MS, maxContinuations }),
    s3: world.s3.client,
    dispatcher,
    shell: capturedShell().shell,
    clock,
    transformRunner: 'inline',
  });
}

it('runs 1,000 items over continuations to a complete manifest with each item exactly once', async () => {
  const clock = hitClock(() => world.upstream.hits(), MS_PER_HIT);
  const summaries: RunSummary[] = [];
  const continuations: DispatchEvent[] = [];
  const context = () => createFakeContext({ remainingMs: REMAINING_MS, now: clock.now });
  // Continuations run the way Lambda's async queue would: the same handler, a new context each time.
  const dispatcher = createInProcessDispatcher(
    async (event) => {
      continuations.push(event);
      summaries.push(asRunSummary(await handler(event, context())));
    },
    (error) => {
      throw error;
    },
  );
  const handler = runner(20, dispatcher, clock);
  // Every 50th item fails (404, no retry): outcomes land in results and errors alike.
  const items = Array.from({ length: ITEMS }, (_, index) => ({
    id: `item-${String(index).padStart(4, '0')}`,
    url: `${world.upstream.url}item/${index}${index % 50 === 0 ? '?status=404' : ''}`,
  }));
  const job = { jobId: 'must-show-1000', items, options: { concurrency: 8, retries: { maxAttempts: 1 } } };

  summaries.push(asRunSummary(await handler(job, context())));
  await dispatcher.drain();

  const [first] = summaries;
  expect(first?.status).toBe('partial');
  expect(first?.continuation).toEqual({ requested: 1 });
  const firstFinished = (first?.counts.succeeded ?? 0) + (first?.counts.failed ?? 0);
  expect(firstFinished).toBeGreaterThanOrEqual(ITEMS * 0.25);
  expect(firstFinished).toBeLessThanOrEqual(ITEMS * 0.4);
  expect(continuations.length).toBeGreaterThanOrEqual(2);
  expect(continuations.map((event) => ('continuation' in event ? event.continuation : 0))).toEqual(
    continuations.map((_, index) => index + 1),
  );
  const last = summaries.at(-1);
  expect(last).toMatchObject({
    status: 'complete',
    counts: { total: ITEMS, succeeded: ITEMS - ITEMS / 50, failed: ITEMS / 50, pending: 0 },
  });

  const manifest = await readManifest(
    { client: world.s3.client, bucket: world.s3.bucket, prefix: 'jobs' },
    'must-show-1000',
  );
  expect(manifest?.status).toBe('complete');
  expect(manifest?.pending).toBeNull();
  const seen = countIds(
    await idsInParts(world.s3.getText, [...(manifest?.results ?? []), ...(manifest?.errors ?? [])]),
  );
  expect(seen.size).toBe(ITEMS);
  for (const item of items) expect(seen.get(item.id), item.id).toBe(1);
  console.info(
    `must-show: ${summaries.length} invocations; finished per run:`,
    summaries.map((summary) => summary.counts.succeeded + summary.counts.failed).join(' -> '),
    `; upstream hits ${world.upstream.hits()}`,
  );
});

it('runs a job left partial by an exhausted chain again on a later trigger, with a chain of its own', async () => {
  const clock = hitClock(() => world.upstream.hits(), MS_PER_HIT);
  const dispatcher = recordingDispatcher();
  const handler = runner(1, dispatcher, clock);
  const invoke = async (event: unknown, remainingMs: number): Promise<RunSummary> =>
    asRunSummary(await handler(event, createFakeContext({ remainingMs, now: clock.now })));
  const job = {
    jobId: 'exhausted-then-triggered',
    items: Array.from({ length: 60 }, (_, index) => `${world.upstream.url}item/${index}`),
    options: { concurrency: 4, retries: { maxAttempts: 1 } },
  };
  // Time for about 10 items per invocation (hits on the injected clock).
  const short = MARGIN_MS + 10 * MS_PER_HIT;
  expect(await invoke(job, short)).toMatchObject({ status: 'partial', continuation: { requested: 1 } });
  const exhausted = await invoke(dispatcher.events[0], short);
  expect(exhausted).toMatchObject({
    status: 'partial',
    continuation: { exhausted: true, maxContinuations: 1 },
  });
  // The same job sent again: it resumes (not returned as is), and asks for continuation 2, its own chain's first.
  const again = await invoke(job, short);
  expect(again.status).toBe('partial');
  expect(again.counts.pending).toBeLessThan(exhausted.counts.pending);
  expect(again.continuation).toEqual({ requested: 2 });
  expect(dispatcher.events[1]).toEqual({ jobId: job.jobId, resume: true, continuation: 2, chainStart: 1 });
  // That chain has a budget of its own, and a long enough run completes the job, each item once.
  const done = await invoke(dispatcher.events[1], 600_000);
  expect(done).toMatchObject({ status: 'complete', counts: { total: 60, succeeded: 60, pending: 0 } });
  const manifest = await readManifest({ client: world.s3.client, bucket: world.s3.bucket }, job.jobId);
  const seen = countIds(await idsInParts(world.s3.getText, manifest?.results ?? []));
  expect(seen.size).toBe(60);
  expect([...seen.values()].every((count) => count === 1)).toBe(true);
});
