// The runner with Distributed Map events (events/dmap-batch.json, generated batches, merge) and the large-job route.
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchEvents, type MapPlan } from '../../functions/core/batches.ts';
import { readManifest } from '../../functions/core/run.ts';
import {
  createRunJobHandler,
  executionName,
  type ScaleDeps,
  type StartExecution,
} from '../../functions/handlers/runner.ts';
import {
  capturedShell,
  createFakeContext,
  loadEvent,
  recordingDispatcher,
  testConfig,
} from '../support/lambda.ts';
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

const STATE_MACHINE = 'arn:aws:states:us-east-1:123456789012:stateMachine:fanout-large-jobs';
const store = () => ({ client: s3.client, bucket: s3.bucket, prefix: 'jobs' });

function runner(stateMachineArn: string | undefined, scale: ScaleDeps = {}) {
  const dispatcher = recordingDispatcher();
  const handler = createRunJobHandler(
    {
      config: testConfig({ bucket: s3.bucket, stateMachineArn }),
      s3: s3.client,
      dispatcher,
      shell: capturedShell().shell,
      transformRunner: 'inline',
    },
    scale,
  );
  return {
    dispatcher,
    invoke: (event: unknown) =>
      handler(event, createFakeContext({ remainingMs: 120_000 })) as Promise<unknown>,
  };
}

function recordingStarter(): { calls: Array<Parameters<StartExecution>[0]>; start: StartExecution } {
  const calls: Array<Parameters<StartExecution>[0]> = [];
  return {
    calls,
    start: async (request) => {
      calls.push(request);
      return { executionArn: `${STATE_MACHINE.replace(':stateMachine:', ':execution:')}:${request.name}` };
    },
  };
}

describe('the runner with Distributed Map events', () => {
  it('runs the sample batch event (events/dmap-batch.json): its bad item fails alone with INVALID_URL', async () => {
    const { invoke } = runner(undefined);
    const reply = await invoke(loadEvent('dmap-batch.json', upstream.url));
    expect(reply).toMatchObject({
      jobId: 'big-job-0001',
      batch: 'big-job-0001/batches/00000',
      firstIndex: 0,
      count: 5,
      status: 'complete',
      counts: { total: 5, succeeded: 4, failed: 1, pending: 0 },
      manifest: 'jobs/big-job-0001/batches/00000/manifest.json',
    });
    const batch = await readManifest({ ...store(), prefix: 'jobs/big-job-0001/batches' }, '00000');
    const errors = await s3.getText(batch?.errors[0] ?? '');
    expect(JSON.parse(errors.trim())).toMatchObject({ url: 'not a url', error: { code: 'INVALID_URL' } });
  });

  it('starts a large job as an execution named by the job id, then runs its batches and the merge', async () => {
    const lines = Array.from({ length: 30 }, (_, i) => `${upstream.url}item/${i}`);
    await s3.client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: 'sources/runner.txt', Body: lines.join('\n') }),
    );
    const starter = recordingStarter();
    const { invoke, dispatcher } = runner(STATE_MACHINE, { startExecution: starter.start, batchSize: 10 });
    const job = { jobId: 'routed', source: { s3: `s3://${s3.bucket}/sources/runner.txt` } };
    upstream.reset();
    const started = await invoke(job);
    expect(started).toMatchObject({ jobId: 'routed', status: 'accepted', items: 30, batches: 3 });
    expect(starter.calls).toHaveLength(1);
    const call = starter.calls[0];
    expect(call).toMatchObject({ stateMachineArn: STATE_MACHINE, name: 'routed' });
    const input = JSON.parse(call?.input ?? '{}') as Record<string, unknown>;
    expect(Object.keys(input).sort()).toEqual(['jobId', 'options', 'source', 'toleratedFailurePercentage']);
    expect(input).toMatchObject({
      jobId: 'routed',
      source: { bucket: s3.bucket, key: 'jobs/routed/map/items.jsonl' },
      toleratedFailurePercentage: 100,
    });
    expect(upstream.hits()).toBe(0);

    // What the map would do with that input: the batches through the runner, then the merge.
    const plan = JSON.parse(await s3.getText('jobs/routed/map/plan.json')) as MapPlan;
    for await (const event of batchEvents(plan, store())) await invoke(event);
    const merged = await invoke({ jobId: 'routed', merge: true });
    expect(merged).toMatchObject({
      jobId: 'routed',
      status: 'complete',
      counts: { total: 30, succeeded: 30 },
    });
    expect(dispatcher.events).toEqual([]);

    // A redelivered start event finds the manifest: nothing started twice.
    await invoke(job);
    expect(starter.calls).toHaveLength(1);
  });

  it('runs small inline jobs itself even with a state machine configured', async () => {
    const starter = recordingStarter();
    const { invoke } = runner(STATE_MACHINE, { startExecution: starter.start, mapMinItems: 10 });
    const reply = await invoke({ jobId: 'small-inline', items: [`${upstream.url}item/1`] });
    expect(reply).toMatchObject({ status: 'complete' });
    expect(starter.calls).toHaveLength(0);
  });

  it('runs an S3 source itself when no state machine is configured', async () => {
    await s3.client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: 'sources/single.txt', Body: `${upstream.url}item/1\n` }),
    );
    const { invoke } = runner(undefined);
    const reply = await invoke({
      jobId: 'single-source',
      source: { s3: `s3://${s3.bucket}/sources/single.txt` },
    });
    expect(reply).toMatchObject({ status: 'complete', counts: { total: 1, succeeded: 1 } });
  });

  it('names executions within the 80-character limit, deterministically', () => {
    const long = `a${'b'.repeat(127)}`;
    expect(executionName('short-id')).toBe('short-id');
    expect(executionName(long)).toHaveLength(80);
    expect(executionName(long)).toBe(executionName(long));
    expect(executionName(long)).not.toBe(executionName(`${long.slice(0, 127)}c`));
  });
});
