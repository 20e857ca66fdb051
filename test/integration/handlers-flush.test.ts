// Measures what FANOUT_DEADLINE_MARGIN_MS must cover: deadline to return of a partial run (printed, not asserted).
import { expect, it } from 'vitest';
import { createRunJobHandler } from '../../functions/handlers/runner.ts';
import {
  asRunSummary,
  capturedShell,
  createFakeContext,
  recordingDispatcher,
  testConfig,
} from '../support/lambda.ts';
import { useLocalWorld } from '../support/world.ts';

const MARGIN_MS = 3_000;
const FETCH_WINDOW_MS = 1_500;
const ITEMS = 5_000;

const world = useLocalWorld();

it('flushes a partial run after its deadline, accounting for every item (the flush time is printed)', async () => {
  const handler = createRunJobHandler({
    config: testConfig({ bucket: world.s3.bucket, deadlineMarginMs: MARGIN_MS }),
    s3: world.s3.client,
    dispatcher: recordingDispatcher(),
    shell: capturedShell().shell,
    transformRunner: 'inline',
  });
  // The last items answer after a minute: whatever the machine's speed, the deadline comes first.
  const items = Array.from(
    { length: ITEMS },
    (_, index) => `${world.upstream.url}item/${index}?latency=${index >= ITEMS - 64 ? 60_000 : 5}`,
  );
  const deadline = Date.now() + FETCH_WINDOW_MS;
  const summary = asRunSummary(
    await handler(
      { jobId: 'flush-margin', items, options: { concurrency: 64, perHost: 64 } },
      createFakeContext({ remainingMs: MARGIN_MS + FETCH_WINDOW_MS }),
    ),
  );
  const flushMs = Date.now() - deadline;
  expect(summary.status).toBe('partial');
  expect(summary.counts.succeeded + summary.counts.pending).toBe(ITEMS);
  console.info(
    `flush after the deadline: ${flushMs} ms (${summary.counts.succeeded} committed, ${summary.counts.pending} pending; margin ${MARGIN_MS} ms)`,
  );
});
