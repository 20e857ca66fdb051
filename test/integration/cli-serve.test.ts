// `fanout serve` and `fanout invoke` as subprocesses: the api and runner handlers behind the local stand-ins.
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../../functions/core/types.ts';
import { runCli, s3Env, spawnCli, useCliWorld } from '../support/cli.ts';
import { loadEvent } from '../support/lambda.ts';

const world = useCliWorld();

async function postJob(
  url: string,
  job: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const reply = await fetch(`${url}/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(job),
  });
  return { status: reply.status, body: (await reply.json()) as Record<string, unknown> };
}

describe('fanout serve', () => {
  it('answers POST /jobs and GET /jobs/{id} through the api handler, runs large jobs in-process, stops on SIGINT', async () => {
    const server = spawnCli(['serve', '--port', '0', '--bucket', world.s3.bucket, '--allow', '127.0.0.1'], {
      env: s3Env(world.s3.endpoint),
    });
    try {
      await server.waitForStderr((stderr) => stderr.includes('serving the jobs API'));
      const url = server.stdout().split('\n')[0] ?? '';
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

      const small = await postJob(url, {
        jobId: `serve-small-${process.pid}`,
        items: [`${world.upstream.origin}/item/1`],
      });
      expect(small.status).toBe(200);
      expect(small.body).toMatchObject({ status: 'complete', counts: { succeeded: 1 } });

      const got = await fetch(`${url}/jobs/serve-small-${process.pid}`);
      expect(got.status).toBe(200);
      expect(((await got.json()) as Manifest).jobId).toBe(`serve-small-${process.pid}`);
      expect((await fetch(`${url}/jobs/never-submitted`)).status).toBe(404);
      const malformed = await fetch(`${url}/jobs/%E0%A4%A`);
      expect(malformed.status).toBe(400);
      expect(await malformed.json()).toMatchObject({ error: { code: 'INVALID_PATH' } });

      const largeId = `serve-large-${process.pid}`;
      const items = Array.from({ length: 150 }, (_, index) => `${world.upstream.origin}/item/${index}`);
      const large = await postJob(url, { jobId: largeId, items });
      expect(large.status).toBe(202);
      expect(large.body).toMatchObject({
        jobId: largeId,
        status: 'accepted',
        links: { self: `/jobs/${largeId}` },
      });
      // The accepted job runs in the serve process; poll until its manifest is final (bounded, not timed).
      let manifest: Manifest | undefined;
      for (let attempt = 0; attempt < 300 && manifest?.status !== 'complete'; attempt++) {
        const reply = await fetch(`${url}/jobs/${largeId}`);
        if (reply.status === 200) manifest = (await reply.json()) as Manifest;
        else await reply.arrayBuffer();
        if (manifest?.status !== 'complete') await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(manifest).toMatchObject({ status: 'complete', counts: { total: 150, succeeded: 150 } });
    } finally {
      server.child.kill('SIGINT');
    }
    const stopped = await server.exited;
    expect(stopped.code).toBe(0);
  });
});

describe('fanout invoke', () => {
  it("runs the runner handler with a job event and prints the handler's result alone on stdout", async () => {
    const jobId = `invoke-${process.pid}`;
    const event = world.dir.file('direct.json', {
      jobId,
      items: [`${world.upstream.origin}/item/1`, `${world.upstream.origin}/item/2`],
    });
    const result = await runCli(['invoke', event, '--bucket', world.s3.bucket, '--allow', '127.0.0.1'], {
      env: s3Env(world.s3.endpoint),
    });

    expect(result.code).toBe(0);
    expect(result.stdout.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ jobId, status: 'complete' });
  });

  it('keeps stdout to the result when the invocation starts a run here (a 202): its logs go to stderr', async () => {
    const event = world.dir.file(
      'api-large.json',
      loadEvent('api-post-large.json', `${world.upstream.origin}/`),
    );
    const result = await runCli(['invoke', event, '--bucket', world.s3.bucket, '--allow', '127.0.0.1'], {
      env: s3Env(world.s3.endpoint),
    });
    expect(result.code).toBe(0);
    expect(result.stdout.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ statusCode: 202 });
    expect(result.stderr).toContain('run finished');
  });

  it("routes an API Gateway event to the api handler and prints Lambda's error payload for a bad event", async () => {
    const apiEvent = world.dir.file('api.json', {
      version: '2.0',
      routeKey: 'GET /jobs/{id}',
      rawPath: '/jobs/not-there',
      rawQueryString: '',
      headers: {},
      pathParameters: { id: 'not-there' },
      requestContext: { http: { method: 'GET', path: '/jobs/not-there' }, routeKey: 'GET /jobs/{id}' },
      isBase64Encoded: false,
    });
    const env = s3Env(world.s3.endpoint);
    const api = await runCli(['invoke', apiEvent, '--bucket', world.s3.bucket], { env });
    expect(api.code).toBe(0);
    expect(JSON.parse(api.stdout)).toMatchObject({ statusCode: 404 });

    const bad = await runCli(['invoke', '-', '--bucket', world.s3.bucket, '--handler', 'run-job'], {
      env,
      input: '[1, 2]',
    });
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({
      errorType: expect.any(String),
      errorMessage: expect.any(String),
    });
  });
});
