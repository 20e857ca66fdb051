// Measures what FANOUT_DEADLINE_MARGIN_MS must cover: deadline to return of a partial run (printed, not asserted).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createRunJobHandler } from '../../functions/handlers/runner.ts';
import {
  asRunSummary,
  capturedShell,
  createFakeContext,
  recordingDispatcher,
  testConfig,
} from '../support/lambda.ts';
import { startTestS3, type TestS3 } from '../support/s3.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

const MARGIN_MS = 3_000;
const FETCH_WINDOW_MS = 1_500;
const ITEMS = 5_000;

let upstream: Upstream;
let s3: TestS3;

beforeAll(async () => {
  [upstream, s3] = await Promise.all([startUpstream(), startTestS3()]);
});
afterAll(async () => {
  await Promise.all([upstream.close(), s3.stop()]);
});

it('flushes a partial run after its deadline, accounting for every item (the flush time is printed)', async () => {
  const handler = createRunJobHandler({
    config: testConfig({ bucket: s3.bucket, deadlineMarginMs: MARGIN_MS }),
    s3: s3.client,
    dispatcher: recordingDispatcher(),
    shell: capturedShell().shell,
    transformRunner: 'inline',
  });
  // The last items answer after a minute: whatever the machine's speed, the deadline comes first.
  const items = Array.from(
    { length: ITEMS },
    (_, index) => `${upstream.url}item/${index}?latency=${index >= ITEMS - 64 ? 60_000 : 5}`,
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
