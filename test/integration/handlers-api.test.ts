// The jobs API through middy + Router with HTTP API 2.0 events, against the local upstream and fauxqs.

import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import type { HandlerConfig } from '../../functions/handlers/config.ts';
import type { RunnerDispatcher } from '../../functions/handlers/dispatch.ts';
import { createApiHandler } from '../../functions/handlers/jobs-api.ts';
import { createRunJobHandler } from '../../functions/handlers/runner.ts';
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
import { injectS3Answers } from '../support/s3-faults.ts';
import { useLocalWorld } from '../support/world.ts';

const world = useLocalWorld();

interface Reply {
  status: number;
  headers: Record<string, unknown>;
  body: Record<string, unknown>;
}

interface ApiHarness {
  call(event: APIGatewayProxyEventV2): Promise<Reply>;
  dispatcher: RecordingDispatcher;
  captured: CapturedShell;
}

function api(
  overrides: Partial<HandlerConfig> = {},
  dispatcher?: RunnerDispatcher,
  clock?: ReturnType<typeof hitClock>,
): ApiHarness {
  const recorder = recordingDispatcher();
  const captured = capturedShell();
  const handler = createApiHandler({
    config: testConfig({ bucket: world.s3.bucket, ...overrides }),
    s3: world.s3.client,
    dispatcher: dispatcher ?? recorder,
    shell: captured.shell,
    transformRunner: 'inline',
    ...(clock ? { clock } : {}),
  });
  const remainingMs = overrides.deadlineMarginMs === undefined ? 29_000 : overrides.deadlineMarginMs + 1_000;
  return {
    dispatcher: recorder,
    captured,
    call: async (event) => {
      const context = createFakeContext({ remainingMs, ...(clock ? { now: clock.now } : {}) });
      const result = (await handler(event, context)) as APIGatewayProxyStructuredResultV2;
      return {
        status: result.statusCode ?? 0,
        headers: result.headers ?? {},
        body: result.body ? (JSON.parse(result.body) as Record<string, unknown>) : {},
      };
    },
  };
}

function runner() {
  return createRunJobHandler({
    config: testConfig({ bucket: world.s3.bucket }),
    s3: world.s3.client,
    dispatcher: recordingDispatcher(),
    shell: capturedShell().shell,
    transformRunner: 'inline',
  });
}

/** An HTTP API 2.0 event shaped like the samples, with the given method, path, body and headers. */
function request(
  method: string,
  path: string,
  options: { body?: string; headers?: Record<string, string> } = {},
): APIGatewayProxyEventV2 {
  const template = loadEvent('api-get.json') as unknown as APIGatewayProxyEventV2;
  const headers: Record<string, string> = {
    ...(template.headers as Record<string, string>),
    ...options.headers,
  };
  const event: APIGatewayProxyEventV2 = {
    ...template,
    routeKey: `${method} ${path}`,
    rawPath: path,
    headers,
    requestContext: { ...template.requestContext, http: { ...template.requestContext.http, method, path } },
  };
  if (options.body !== undefined) event.body = options.body;
  return event;
}

const jsonHeaders = { 'content-type': 'application/json' };
const postJob = (job: unknown, headers: Record<string, string> = {}) =>
  request('POST', '/jobs', { body: JSON.stringify(job), headers: { ...jsonHeaders, ...headers } });
const urls = (count: number) =>
  Array.from({ length: count }, (_, index) => `${world.upstream.url}item/${index}`);

describe('POST /jobs', () => {
  it('runs a small job synchronously: 200 with the manifest and its results inline', async () => {
    const { call } = api();
    const reply = await call(
      loadEvent('api-post-small.json', world.upstream.url) as unknown as APIGatewayProxyEventV2,
    );
    expect(reply.status).toBe(200);
    expect(reply.body).toMatchObject({
      jobId: 'demo-small-0001',
      status: 'complete',
      counts: { total: 4, succeeded: 4, failed: 0, pending: 0 },
    });
    const inline = reply.body.inline as { results: Array<{ id: string; value: unknown }>; errors: unknown[] };
    expect(inline.results).toHaveLength(4);
    expect(inline.results.map((line) => line.id)).toContain('item-echo');
    expect(inline.errors).toEqual([]);
    expect(world.upstream.hits()).toBe(4);
  });

  it('accepts a large job with 202 and starts the runner asynchronously; GET answers 202, then 200', async () => {
    const { call, dispatcher } = api();
    const reply = await call(
      loadEvent('api-post-large.json', world.upstream.url) as unknown as APIGatewayProxyEventV2,
    );
    expect(reply).toMatchObject({
      status: 202,
      body: { jobId: 'demo-large-0001', status: 'accepted', links: { self: '/jobs/demo-large-0001' } },
    });
    expect(reply.headers.location).toBe('/jobs/demo-large-0001');
    expect(world.upstream.hits()).toBe(0);
    expect(dispatcher.events).toEqual([{ jobId: 'demo-large-0001', accepted: true }]);

    expect((await call(request('GET', '/jobs/demo-large-0001'))).status).toBe(202);
    const summary = await runner()(dispatcher.events[0], createFakeContext({ remainingMs: 120_000 }));
    expect(summary).toMatchObject({ jobId: 'demo-large-0001', status: 'complete', counts: { total: 250 } });
    const done = await call(request('GET', '/jobs/demo-large-0001'));
    expect(done).toMatchObject({ status: 200, body: { status: 'complete', counts: { succeeded: 250 } } });
  });

  it('answers 200 with a partial manifest when a sync job meets its deadline, and asks for a continuation', async () => {
    // 1 s of fetching at 100 ms per upstream hit: about 10 of the 50 items.
    const { call, dispatcher } = api(
      { deadlineMarginMs: 3_000 },
      undefined,
      hitClock(() => world.upstream.hits(), 100),
    );
    const reply = await call(
      postJob({ items: urls(50), options: { concurrency: 2 } }, { 'idempotency-key': 'sync-partial' }),
    );
    expect(reply).toMatchObject({ status: 200, body: { jobId: 'sync-partial', status: 'partial' } });
    expect((reply.body.counts as { pending: number }).pending).toBeGreaterThan(0);
    expect(dispatcher.events).toEqual([{ jobId: 'sync-partial', resume: true, continuation: 1 }]);
  });

  it('never starts a second job for the same Idempotency-Key', async () => {
    const { call, dispatcher } = api();
    const job = { items: urls(150) };
    const first = await call(postJob(job, { 'idempotency-key': 'once-only-1' }));
    const second = await call(postJob(job, { 'idempotency-key': 'once-only-1' }));
    expect(first.status).toBe(202);
    expect(second).toMatchObject({ status: 202, body: { jobId: 'once-only-1', status: 'accepted' } });
    expect(dispatcher.events).toHaveLength(1);

    const small = { items: urls(3) };
    const ran = await call(postJob(small, { 'idempotency-key': 'once-only-2' }));
    const repeated = await call(postJob(small, { 'idempotency-key': 'once-only-2' }));
    expect(ran).toMatchObject({ status: 200, body: { jobId: 'once-only-2', status: 'complete' } });
    expect(repeated).toMatchObject({ status: 200, body: { jobId: 'once-only-2', status: 'complete' } });
    expect(world.upstream.hits()).toBe(3);
  });

  it('refuses an Idempotency-Key reused with another body (409)', async () => {
    const { call } = api();
    await call(postJob({ items: urls(2) }, { 'idempotency-key': 'reused-key' }));
    const reply = await call(postJob({ items: urls(3) }, { 'idempotency-key': 'reused-key' }));
    expect(reply).toMatchObject({ status: 409, body: { error: { code: 'IDEMPOTENCY_KEY_REUSED' } } });
    expect(world.upstream.hits()).toBe(2);
  });

  const cases: Array<[string, () => APIGatewayProxyEventV2, number, string]> = [
    [
      '415 to a non-JSON content type',
      () => request('POST', '/jobs', { body: 'x', headers: { 'content-type': 'text/plain' } }),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
    ['415 to no content type', () => request('POST', '/jobs', { body: '{}' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
    [
      '400 to invalid JSON',
      () => request('POST', '/jobs', { body: '{"items": [', headers: jsonHeaders }),
      400,
      'INVALID_JSON',
    ],
    [
      '400 to an invalid Idempotency-Key',
      () => postJob({ items: urls(1) }, { 'idempotency-key': '../etc' }),
      400,
      'INVALID_IDEMPOTENCY_KEY',
    ],
    ['413 to more items than FANOUT_MAX_ITEMS', () => postJob({ items: urls(301) }), 413, 'TOO_MANY_ITEMS'],
    [
      '413 to a body over FANOUT_MAX_REQUEST_BYTES',
      () => postJob({ items: urls(1), pad: 'x'.repeat(40_000) }),
      413,
      'BODY_TOO_LARGE',
    ],
    [
      '422 to a schema error',
      () => postJob({ items: urls(1), options: { concurrency: 0 } }),
      422,
      'INVALID_JOB',
    ],
    ['405 to a wrong method on /jobs', () => request('GET', '/jobs'), 405, 'METHOD_NOT_ALLOWED'],
    [
      '405 to a wrong method on /jobs/{id}',
      () => request('DELETE', '/jobs/some-job'),
      405,
      'METHOD_NOT_ALLOWED',
    ],
    ['404 to an unknown path', () => request('GET', '/nothing-here'), 404, 'NOT_FOUND'],
    ['400 to a malformed %-escape in a job id', () => request('GET', '/jobs/%E0%A4%A'), 400, 'INVALID_PATH'],
  ];
  it.each(cases)('answers %s, and fetches nothing', async (_name, event, status, code) => {
    const { call, dispatcher } = api({ maxItems: 300, maxRequestBytes: 32 * 1024 });
    const reply = await call(event());
    expect(reply.status).toBe(status);
    expect(reply.body).toMatchObject({ error: { code } });
    expect(world.upstream.hits()).toBe(0);
    expect(dispatcher.events).toEqual([]);
  });

  it('names the path of each schema problem (422)', async () => {
    const { call } = api();
    const items = [...urls(3), 'ftp://example.com/file'];
    const reply = await call(postJob({ items, options: { concurrency: 2000 } }));
    expect(reply.status).toBe(422);
    const issues = (reply.body.error as { issues: Array<{ path: string; message: string }> }).issues;
    expect(issues.map((issue) => issue.path)).toEqual(expect.arrayContaining(['options.concurrency']));
    const itemReply = await call(postJob({ items }));
    const itemIssues = (itemReply.body.error as { issues: Array<{ path: string }> }).issues;
    expect(itemIssues).toEqual([expect.objectContaining({ path: 'items[3].url' })]);
  });

  it('answers 405 with an Allow header naming the method the path takes', async () => {
    const { call } = api();
    const reply = await call(request('PUT', '/jobs/x/redrive'));
    expect(reply.status).toBe(405);
    expect(reply.headers.allow).toBe('POST');
  });

  it('answers 500 with an error id only, and logs the failure under that id', async () => {
    const failing: RunnerDispatcher = {
      dispatch: async () => {
        throw new Error('secret internal detail');
      },
      drain: async () => {},
    };
    const { call, captured } = api({}, failing);
    const reply = await call(postJob({ items: urls(120) }));
    expect(reply.status).toBe(500);
    const error = reply.body.error as { code: string; errorId: string; message: string };
    expect(error.code).toBe('INTERNAL');
    expect(JSON.stringify(reply.body)).not.toMatch(/secret|at .*\.ts/);
    expect(captured.logs).toContainEqual(expect.objectContaining({ level: 'ERROR', errorId: error.errorId }));
  });

  it('frees the id when the runner could not be started, so a retry can start it', async () => {
    const broken: RunnerDispatcher = {
      dispatch: async () => {
        throw new Error('throttled');
      },
      drain: async () => {},
    };
    const job = { items: urls(120) };
    expect(
      (await api({}, broken).call(postJob(job, { 'idempotency-key': 'retry-after-failure' }))).status,
    ).toBe(500);
    const { call, dispatcher } = api();
    expect((await call(postJob(job, { 'idempotency-key': 'retry-after-failure' }))).status).toBe(202);
    expect(dispatcher.events).toHaveLength(1);
  });
});

describe("POST /jobs when the request's own run fails", () => {
  /** Test-only S3 faults: 403 on the writes `failing` picks, until restored. */
  function denyWrites(failing: (key: string) => boolean): () => void {
    return injectS3Answers(world.s3.client, (command, { input }) => {
      const key = String(input.Key ?? '');
      const write = command === 'PutObjectCommand' || command === 'CreateMultipartUploadCommand';
      return write && failing(key) ? { status: 403, code: 'AccessDenied' } : null;
    });
  }

  it('frees the id when nothing was written, so the retry runs the job', async () => {
    const headers = { 'idempotency-key': 'sync-nothing-written' };
    const restore = denyWrites((key) => !key.endsWith('accepted.json'));
    let first: Reply;
    try {
      first = await api().call(postJob({ items: urls(2) }, headers));
    } finally {
      restore();
    }
    expect(first.status).toBe(500);
    const retry = await api().call(postJob({ items: urls(2) }, headers));
    expect(retry).toMatchObject({ status: 200, body: { status: 'complete' } });
  });

  it('hands a run that got as far as a manifest to the runner (202), which finishes it', async () => {
    const headers = { 'idempotency-key': 'sync-manifest-written' };
    const restore = denyWrites((key) => key.includes('/results/'));
    let first: Reply;
    const { call, dispatcher } = api();
    try {
      first = await call(postJob({ items: urls(2) }, headers));
    } finally {
      restore();
    }
    expect(first).toMatchObject({ status: 202, body: { status: 'accepted' } });
    expect(dispatcher.events).toEqual([{ jobId: 'sync-manifest-written', accepted: true }]);
    const summary = asRunSummary(
      await runner()(dispatcher.events[0], createFakeContext({ remainingMs: 60_000 })),
    );
    expect(summary).toMatchObject({ status: 'complete', counts: { total: 2, succeeded: 2 } });
  });
});

describe('GET /jobs/{id} and redrive', () => {
  it('answers 200 with the manifest of a finished job (events/api-get.json)', async () => {
    const { call } = api();
    await call(loadEvent('api-post-small.json', world.upstream.url) as unknown as APIGatewayProxyEventV2);
    const reply = await call(loadEvent('api-get.json') as unknown as APIGatewayProxyEventV2);
    expect(reply).toMatchObject({ status: 200, body: { jobId: 'demo-small-0001', status: 'complete' } });
  });

  it.each(['never-submitted', '..%2Fescape'])('answers 404 for an unknown job id %s', async (id) => {
    const { call } = api();
    const reply = await call(request('GET', `/jobs/${id}`));
    expect(reply).toMatchObject({ status: 404, body: { error: { code: 'NOT_FOUND' } } });
  });

  it('redrives the failed items of a job: 202, then the runner moves the recovered ones to results', async () => {
    const { call, dispatcher } = api();
    const items = [
      `${world.upstream.url}item/1`,
      `${world.upstream.url}recovers?failFirst=1&failStatus=500`,
      `${world.upstream.url}gone?status=404`,
    ];
    const post = await call(
      request('POST', '/jobs', {
        body: JSON.stringify({ jobId: 'redrive-me', items, options: { retries: { maxAttempts: 1 } } }),
        headers: { 'content-type': 'application/json' },
      }),
    );
    expect(post).toMatchObject({ status: 200, body: { counts: { succeeded: 1, failed: 2 } } });

    const reply = await call(
      request('POST', '/jobs/redrive-me/redrive', {
        body: JSON.stringify({ codes: ['HTTP_STATUS'] }),
        headers: { 'content-type': 'application/json' },
      }),
    );
    expect(reply).toMatchObject({ status: 202, body: { jobId: 'redrive-me', status: 'accepted' } });
    expect(dispatcher.events).toEqual([{ jobId: 'redrive-me', redrive: true, codes: ['HTTP_STATUS'] }]);

    const summary = await runner()(dispatcher.events[0], createFakeContext({ remainingMs: 120_000 }));
    expect(summary).toMatchObject({ status: 'complete', counts: { total: 3, succeeded: 2, failed: 1 } });
    const manifest = await call(request('GET', '/jobs/redrive-me'));
    expect(manifest).toMatchObject({
      status: 200,
      body: { redriven: 2, counts: { succeeded: 2, failed: 1 } },
    });
  });

  it('refuses (409) a redrive of a job whose last run died, which GET shows as partial; a repeated POST resumes it', async () => {
    const { call, dispatcher } = api();
    const job = { items: [`${world.upstream.url}item/1`, `${world.upstream.url}item/2?status=404`] };
    const headers = { 'idempotency-key': 'dead-run' };
    expect((await call(postJob(job, headers))).status).toBe(200);
    // A run that died mid-way: its checkpoint stays `running`, its heartbeat an hour old.
    const key = 'jobs/dead-run/manifest.json';
    const stored = JSON.parse(await world.s3.getText(key)) as Record<string, unknown>;
    const dead = {
      ...stored,
      status: 'running',
      heartbeatAt: new Date(Date.now() - 3_600_000).toISOString(),
    };
    await world.s3.client.send(
      new PutObjectCommand({ Bucket: world.s3.bucket, Key: key, Body: JSON.stringify(dead) }),
    );
    expect(await call(request('GET', '/jobs/dead-run'))).toMatchObject({
      status: 200,
      body: { status: 'partial' },
    });
    const reply = await call(request('POST', '/jobs/dead-run/redrive'));
    expect(reply).toMatchObject({ status: 409, body: { error: { code: 'JOB_RUNNING' } } });
    expect(dispatcher.events).toEqual([]);
    // The same POST again hands the job to the runner, which finishes the dead run.
    expect(await call(postJob(job, headers))).toMatchObject({ status: 202, body: { status: 'accepted' } });
    expect(dispatcher.events).toEqual([{ jobId: 'dead-run', accepted: true }]);
    const summary = asRunSummary(
      await runner()(dispatcher.events[0], createFakeContext({ remainingMs: 60_000 })),
    );
    expect(summary).toMatchObject({ status: 'complete', counts: { total: 2, succeeded: 1, failed: 1 } });
  });

  it.each([
    ['an unknown job', '/jobs/never-submitted/redrive', undefined, 404, 'NOT_FOUND'],
    ['an unknown error code', '/jobs/demo-small-0001/redrive', '{"codes":["NOPE"]}', 422, 'INVALID_REDRIVE'],
    ['an unknown key', '/jobs/demo-small-0001/redrive', '{"code":"HTTP_STATUS"}', 422, 'INVALID_REDRIVE'],
    ['invalid JSON', '/jobs/demo-small-0001/redrive', '{"codes":', 400, 'INVALID_JSON'],
  ])('answers a redrive of %s with %i', async (_name, path, body, status, code) => {
    const { call, dispatcher } = api();
    await call(loadEvent('api-post-small.json', world.upstream.url) as unknown as APIGatewayProxyEventV2);
    const options = body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } };
    const reply = await call(request('POST', path, options));
    expect(reply).toMatchObject({ status, body: { error: { code } } });
    expect(dispatcher.events).toEqual([]);
  });
});
