// Ctrl-C during `fanout run`: in-flight items become pending, the manifest says partial (exit 2), a rerun finishes.
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../../functions/core/types.ts';
import { progressLines, runCli, s3Env, spawnCli, useCliWorld } from '../support/cli.ts';
import { idsInParts } from '../support/s3.ts';

const world = useCliWorld();

const idsIn = (keys: readonly string[]): Promise<string[]> => idsInParts(world.s3.getText, keys);

describe('fanout run interrupted by SIGINT', () => {
  it('writes a partial manifest and exits 2; the rerun completes with every item exactly once', async () => {
    const jobId = `cli-sigint-${process.pid}`;
    // Slow enough that the run is still going when we interrupt it, whatever the machine's speed.
    const items = Array.from({ length: 40 }, (_, index) => ({
      id: `item-${index}`,
      url: `${world.upstream.origin}/item/${index}?latency=300`,
    }));
    const path = world.dir.file('sigint.json', { jobId, items, options: { concurrency: 2 } });
    const args = ['run', path, '--bucket', world.s3.bucket, '--allow', '127.0.0.1', '--progress', 'json'];
    const env = { ...s3Env(world.s3.endpoint), FANOUT_PROGRESS_INTERVAL_MS: '50' };

    const first = spawnCli(args, { env });
    // Interrupt once a few items are done: progress lines say so, no wall-clock guess.
    await first.waitForStderr((stderr) => progressLines(stderr).some((line) => Number(line.done) >= 3));
    first.child.kill('SIGINT');
    const interrupted = await first.exited;

    expect(interrupted.code).toBe(2);
    expect(interrupted.stderr).toMatch(/interrupted/);
    const partial = JSON.parse(interrupted.stdout) as Manifest;
    expect(partial.status).toBe('partial');
    expect(partial.counts.pending).toBeGreaterThan(0);
    expect(partial.counts.succeeded + partial.counts.failed + partial.counts.pending).toBe(40);

    const rerun = await runCli(args, { env });
    expect(rerun.code).toBe(0);
    const complete = JSON.parse(rerun.stdout) as Manifest;
    expect(complete).toMatchObject({
      status: 'complete',
      runs: 2,
      counts: { total: 40, succeeded: 40, pending: 0 },
    });
    const ids = [...(await idsIn(complete.results)), ...(await idsIn(complete.errors))];
    expect(ids.sort()).toEqual(items.map((item) => item.id).sort());
  });

  it('leaves nothing that stops an immediate rerun after SIGKILL mid-run: the rerun completes, each item once', async () => {
    const jobId = `cli-kill-${process.pid}`;
    const items = Array.from({ length: 30 }, (_, index) => ({
      id: `kill-${index}`,
      url: `${world.upstream.origin}/item/${index}?latency=200`,
    }));
    const path = world.dir.file('kill.json', { jobId, items, options: { concurrency: 2 } });
    const args = ['run', path, '--bucket', world.s3.bucket, '--allow', '127.0.0.1', '--progress', 'json'];
    const env = { ...s3Env(world.s3.endpoint), FANOUT_PROGRESS_INTERVAL_MS: '50' };

    const first = spawnCli(args, { env });
    await first.waitForStderr((stderr) => progressLines(stderr).some((line) => Number(line.done) >= 4));
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');

    const rerun = await runCli(args, { env });
    expect(rerun.code).toBe(0);
    const complete = JSON.parse(rerun.stdout) as Manifest;
    expect(complete).toMatchObject({ status: 'complete', counts: { total: 30, succeeded: 30, pending: 0 } });
    const ids = [...(await idsIn(complete.results)), ...(await idsIn(complete.errors))];
    expect(ids.sort()).toEqual(items.map((item) => item.id).sort());
  });
});
