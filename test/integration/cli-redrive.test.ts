// `fanout redrive` as a subprocess: failed items re-run, recovered ones move from errors to results, ids stay once.
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../../functions/core/types.ts';
import { runCli, s3Env, useCliWorld } from '../support/cli.ts';
import { idsInParts } from '../support/s3.ts';

const world = useCliWorld();

const idsIn = (keys: readonly string[]): Promise<string[]> => idsInParts(world.s3.getText, keys);

describe('fanout redrive', () => {
  it('re-runs the failed items with the chosen codes; a recovered item moves to results, every id once', async () => {
    const jobId = `cli-redrive-${process.pid}`;
    // Fails its first 3 attempts (one run's worth), then answers: the redrive recovers it.
    const flaky = { id: 'flaky', url: `${world.upstream.origin}/flaky?failFirst=3&failStatus=500` };
    const items = [{ id: 'fine', url: `${world.upstream.origin}/item/1` }, flaky];
    const path = world.dir.file('redrive.json', {
      jobId,
      items,
      options: { retries: { maxAttempts: 3, baseMs: 1 } },
    });
    const common = ['--bucket', world.s3.bucket, '--allow', '127.0.0.1', '--progress', 'none'];
    const env = s3Env(world.s3.endpoint);

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
