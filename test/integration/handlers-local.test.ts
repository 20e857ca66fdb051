// The handlers' edges without a job: configuration, event classification, the local invoker and dispatcher.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../functions/handlers/config.ts';
import { createInProcessDispatcher, createLambdaDispatcher } from '../../functions/handlers/dispatch.ts';
import { createShell } from '../../functions/handlers/lambda-shell.ts';
import { classifyRunnerEvent } from '../../functions/handlers/runner-events.ts';
import {
  createFakeContext,
  handlerFileForEvent,
  invokeForCli,
  invokeHandler,
  toLambdaError,
} from '../../functions/local/invoke.ts';
import { capturedShell, loadEvent, ManualClock } from '../support/lambda.ts';

describe('configuration', () => {
  it('fills the defaults from a bucket alone', () => {
    expect(loadConfig({ FANOUT_BUCKET: 'results-bucket' })).toEqual({
      bucket: 'results-bucket',
      prefix: 'jobs',
      allow: [],
      syncMaxItems: 100,
      maxItems: 10_000,
      maxRequestBytes: 1_048_576,
      runnerFunction: undefined,
      stateMachineArn: undefined,
      maxContinuations: 20,
      deadlineMarginMs: 3_000,
      localDispatch: undefined,
      tracing: false,
      gzip: false,
      mapBatchSize: 1_000,
      mapConcurrency: 40,
      mapMinItems: 5_000,
    });
  });

  it('reads every variable', () => {
    const config = loadConfig({
      FANOUT_BUCKET: 'results-bucket',
      FANOUT_PREFIX: '/nightly/jobs/',
      FANOUT_ALLOW: ' api.example.com , 10.0.0.0/8 ,',
      FANOUT_SYNC_MAX_ITEMS: '50',
      FANOUT_MAX_ITEMS: '2000',
      FANOUT_MAX_REQUEST_BYTES: '262144',
      FANOUT_RUNNER_FUNCTION: 'fanout-runner',
      FANOUT_STATE_MACHINE_ARN: 'arn:aws:states:us-east-1:123456789012:stateMachine:fanout',
      FANOUT_MAX_CONTINUATIONS: '5',
      FANOUT_DEADLINE_MARGIN_MS: '4500',
      FANOUT_LOCAL_DISPATCH: 'inprocess',
      FANOUT_TRACING: 'true',
      FANOUT_MAP_BATCH_SIZE: '250',
      FANOUT_MAP_CONCURRENCY: '10',
      FANOUT_MAP_MIN_ITEMS: '20000',
    });
    expect(config).toMatchObject({
      prefix: 'nightly/jobs',
      allow: ['api.example.com', '10.0.0.0/8'],
      syncMaxItems: 50,
      maxItems: 2000,
      maxRequestBytes: 262_144,
      maxContinuations: 5,
      deadlineMarginMs: 4500,
      localDispatch: 'inprocess',
      tracing: true,
      mapBatchSize: 250,
      mapConcurrency: 10,
      mapMinItems: 20_000,
    });
  });

  it.each([
    [{}, /FANOUT_BUCKET: is required/],
    [{ FANOUT_BUCKET: 'Bad_Bucket' }, /FANOUT_BUCKET: must be an S3 bucket name \(got "Bad_Bucket"\)/],
    [{ FANOUT_BUCKET: 'b-ok', FANOUT_SYNC_MAX_ITEMS: 'ten' }, /FANOUT_SYNC_MAX_ITEMS: must be an integer/],
    [
      { FANOUT_BUCKET: 'b-ok', FANOUT_MAX_CONTINUATIONS: '5000' },
      /FANOUT_MAX_CONTINUATIONS: must be <= 1000/,
    ],
    [{ FANOUT_BUCKET: 'b-ok', FANOUT_LOCAL_DISPATCH: 'threads' }, /FANOUT_LOCAL_DISPATCH/],
    [{ FANOUT_BUCKET: 'b-ok', FANOUT_TRACING: 'yes' }, /FANOUT_TRACING: must be "true" or "false"/],
  ])('rejects %j naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });
});

describe('runner events', () => {
  it('derives a scheduled job id from the rule and the time, the same on redelivery', () => {
    const event = loadEvent('schedule.json');
    const first = classifyRunnerEvent(event);
    const redelivered = classifyRunnerEvent({ ...event, id: 'another-delivery-id' });
    expect(first).toMatchObject({ kind: 'schedule', jobId: 'fanout-nightly-prices-20261125T020000Z' });
    expect(redelivered).toEqual(first);
  });

  it('prefers the job id a scheduled job names, still stamped with the time', () => {
    const event = loadEvent('schedule.json');
    const request = classifyRunnerEvent({
      ...event,
      detail: { ...(event.detail as object), jobId: 'prices' },
    });
    expect(request).toMatchObject({ jobId: 'prices-20261125T020000Z' });
  });

  it.each([
    ['direct.json', 'job'],
    ['continuation.json', 'resume'],
    ['dmap-batch.json', 'batch'],
  ])('classifies %s as %s', (name, kind) => {
    expect(classifyRunnerEvent(loadEvent(name)).kind).toBe(kind);
  });

  it.each([
    [{ 'detail-type': 'Scheduled Event', time: '2026-11-25T02:00:00Z', detail: {} }, /carry the job/],
    [{ 'detail-type': 'Scheduled Event', detail: { items: ['https://a.example/'] } }, /"time"/],
    [{ jobId: '../x', resume: true }, /jobId must match/],
    [{ jobId: 'ok', resume: true, continuation: 0 }, /positive integer/],
    [[1, 2], /JSON object/],
  ])('rejects a malformed event %j with INVALID_EVENT', (event, message) => {
    expect(() => classifyRunnerEvent(event)).toThrow(message);
  });
});

describe('local invoker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fanout-invoke-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('counts the remaining time down on the injected clock', () => {
    const clock = new ManualClock();
    const context = createFakeContext({
      remainingMs: 10_000,
      now: () => clock.now(),
      functionName: 'runner',
    });
    expect(context.getRemainingTimeInMillis()).toBe(10_000);
    clock.advance(2_500);
    expect(context.getRemainingTimeInMillis()).toBe(7_500);
    clock.advance(60_000);
    expect(context.getRemainingTimeInMillis()).toBe(0);
    expect(context.functionName).toBe('runner');
  });

  it('loads a handler from a file in a folder without node_modules, with the env set only while it runs', async () => {
    const file = join(dir, 'index.mjs');
    writeFileSync(
      file,
      'const bucket = process.env.FANOUT_BUCKET;\n' +
        'export const handler = async (event, context) => ({ bucket, event, remaining: context.getRemainingTimeInMillis() });\n',
    );
    delete process.env.FANOUT_BUCKET;
    const result = await invokeHandler(
      file,
      { hello: 1 },
      { remainingMs: 5_000, env: { FANOUT_BUCKET: 'from-env' }, now: () => 0 },
    );
    expect(result).toEqual({ bucket: 'from-env', event: { hello: 1 }, remaining: 5_000 });
    expect(process.env.FANOUT_BUCKET).toBeUndefined();
  });

  it('prints the result alone, and a failure as Lambda formats it', async () => {
    const ok = await invokeForCli(async () => {
      process.stdout.write('a log line that must not reach stdout\n');
      return { statusCode: 200 };
    }, {});
    expect(ok).toEqual({ exitCode: 0, output: '{"statusCode":200}' });
    const failed = await invokeForCli(async () => {
      throw new TypeError('bad input');
    }, {});
    expect(failed.exitCode).toBe(1);
    const payload = JSON.parse(failed.output) as { errorType: string; errorMessage: string; trace: string[] };
    expect(payload).toMatchObject({ errorType: 'TypeError', errorMessage: 'bad input' });
    expect(payload.trace[0]).toBe('TypeError: bad input');
    expect(toLambdaError('plain')).toEqual({ errorType: 'Error', errorMessage: 'plain', trace: [] });
  });

  it('picks the API handler for API Gateway events and the runner for the rest', () => {
    expect(handlerFileForEvent(loadEvent('api-get.json'))).toMatch(/handlers\/api\.ts$/);
    expect(handlerFileForEvent(loadEvent('schedule.json'))).toMatch(/handlers\/run-job\.ts$/);
  });
});

describe('shell', () => {
  it('runs a handler with tracing on, loading the tracer only then', async () => {
    const { shell } = capturedShell();
    const traced = createShell({ tracing: true, logger: shell.logger, metrics: shell.metrics }).wrap(
      async (event: { n: number }) => event.n + 1,
    );
    expect(await traced({ n: 41 }, createFakeContext())).toBe(42);
  });
});

describe('dispatchers', () => {
  it('runs dispatched events in-process after the caller returns, and drains runs they start', async () => {
    const ran: string[] = [];
    const dispatcher = createInProcessDispatcher(async (event) => {
      ran.push(JSON.stringify(event));
      if ('resume' in event && event.continuation < 3) {
        await dispatcher.dispatch({ jobId: event.jobId, resume: true, continuation: event.continuation + 1 });
      }
    });
    await dispatcher.dispatch({ jobId: 'chain', resume: true, continuation: 1 });
    expect(ran).toEqual([]);
    await dispatcher.drain();
    expect(ran).toHaveLength(3);
  });

  it('refuses to invoke without FANOUT_RUNNER_FUNCTION', async () => {
    await expect(
      createLambdaDispatcher(undefined).dispatch({ jobId: 'x', accepted: true }),
    ).rejects.toMatchObject({
      code: 'NO_RUNNER',
    });
  });
});
