// `fanout redrive` as a subprocess: failed items re-run, recovered ones move from errors to results, ids stay once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../functions/core/types.ts';
import { runCli, s3Env, tempDir } from '../support/cli.ts';
import { idsInParts, startTestS3, type TestS3 } from '../support/s3.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let upstream: Upstream;
let s3: TestS3;
let dir: ReturnType<typeof tempDir>;

beforeAll(async () => {
  [upstream, s3] = await Promise.all([startUpstream(), startTestS3()]);
  dir = tempDir();
});
afterAll(async () => {
  await Promise.all([upstream.close(), s3.stop()]);
  dir.remove();
});

const idsIn = (keys: readonly string[]): Promise<string[]> => idsInParts(s3.getText, keys);

describe('fanout redrive', () => {
  it('re-runs the failed items with the chosen codes; a recovered item moves to results, every id once', async () => {
    const jobId = `cli-redrive-${process.pid}`;
    // Fails its first 3 attempts (one run's worth), then answers: the redrive recovers it.
    const flaky = { id: 'flaky', url: `${upstream.origin}/flaky?failFirst=3&failStatus=500` };
    const items = [{ id: 'fine', url: `${upstream.origin}/item/1` }, flaky];
    const path = dir.file('redrive.json', {
      jobId,
      items,
      options: { retries: { maxAttempts: 3, baseMs: 1 } },
    });
    const common = ['--bucket', s3.bucket, '--allow', '127.0.0.1', '--progress', 'none'];
    const env = s3Env(s3.endpoint);

    const first = await runCli(['run', path, ...common], { env });
    expect(first.code).toBe(3);

    const redriven = await runCli(['redrive', jobId, '--codes', 'HTTP_STATUS', ...common], { env });
    expect(redriven.code).toBe(0);
    const manifest = JSON.parse(redriven.stdout) as Manifest;
    expect(manifest).toMatchObject({ status: 'complete', counts: { succeeded: 2, failed: 0 } });
    expect((await idsIn(manifest.results)).sort()).toEqual(['fine', 'flaky']);
    expect(await idsIn(manifest.errors)).toEqual([]);
  });
});
