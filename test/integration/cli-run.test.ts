// `fanout run` end to end as a subprocess: exit codes 0/3/2/1, the manifest alone on stdout, results in S3.
import { beforeEach, describe, expect, it } from 'vitest';
import type { Manifest } from '../../functions/core/types.ts';
import { runCli, s3Env, useCliWorld } from '../support/cli.ts';

const world = useCliWorld();
let jobs = 0;

beforeEach(() => world.upstream.reset());

/** A job file with a fresh id, so every test owns its job. */
function jobFile(items: unknown[], options: Record<string, unknown> = {}): { path: string; jobId: string } {
  const jobId = `cli-run-${++jobs}-${process.pid}`;
  return { path: world.dir.file(`${jobId}.json`, { jobId, items, options }), jobId };
}

function run(args: string[], input?: string) {
  return runCli(['run', ...args, '--bucket', world.s3.bucket, '--progress', 'json'], {
    env: { ...s3Env(world.s3.endpoint), FANOUT_LOCAL_DIR: world.dir.path },
    ...(input === undefined ? {} : { input }),
  });
}

async function linesOf(keys: readonly string[]): Promise<Array<Record<string, unknown>>> {
  const texts = await Promise.all(keys.map((key) => world.s3.getText(key)));
  return texts.flatMap((text) =>
    text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>),
  );
}

describe('fanout run', () => {
  it('exits 0 for a clean complete job, prints only the manifest on stdout, and the results in S3 match', async () => {
    const urls = Array.from({ length: 12 }, (_, index) => `${world.upstream.origin}/item/${index}`);
    const job = jobFile(urls, { concurrency: 4 });
    const result = await run([job.path, '--allow', '127.0.0.1']);

    expect(result.code).toBe(0);
    const manifest = JSON.parse(result.stdout) as Manifest;
    expect(manifest).toMatchObject({
      jobId: job.jobId,
      status: 'complete',
      counts: { total: 12, succeeded: 12, failed: 0, pending: 0 },
    });
    const results = await linesOf(manifest.results);
    expect(results.map((line) => line.url).sort()).toEqual([...urls].sort());
    expect(results.every((line) => line.status === 200)).toBe(true);
    expect(world.upstream.hits()).toBe(12);
    expect(result.stderr).toContain(`job ${job.jobId} complete`);
  });

  it('exits 3 when the job completes with failed items, recorded in errors/ with their code', async () => {
    const job = jobFile([`${world.upstream.origin}/item/1`, `${world.upstream.origin}/missing?status=404`]);
    const result = await run([job.path, '--allow', '127.0.0.1']);

    expect(result.code).toBe(3);
    const manifest = JSON.parse(result.stdout) as Manifest;
    expect(manifest.counts).toMatchObject({ succeeded: 1, failed: 1, pending: 0 });
    const errors = await linesOf(manifest.errors);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ error: { code: 'HTTP_STATUS', status: 404 } });
  });

  it('exits 2 when the deadline leaves items pending, and lists them in pending.jsonl', async () => {
    // Items that never answer: whatever the timing, the deadline is what ends them.
    const hanging = [1, 2, 3].map((index) => `${world.upstream.origin}/slow/${index}?hang=1`);
    const job = jobFile([`${world.upstream.origin}/item/1`, ...hanging], { concurrency: 4 });
    const result = await run([job.path, '--allow', '127.0.0.1', '--deadline', '500ms']);

    expect(result.code).toBe(2);
    const manifest = JSON.parse(result.stdout) as Manifest;
    expect(manifest.status).toBe('partial');
    expect(manifest.counts.pending).toBe(3);
    expect(manifest.pending).not.toBeNull();
    const pending = await linesOf([manifest.pending ?? '']);
    expect(pending.map((line) => line.url).sort()).toEqual(hanging.sort());
  });

  it('exits 1 and still prints the manifest when the failure ratio aborts the job', async () => {
    const failing = Array.from(
      { length: 12 },
      (_, index) => `${world.upstream.origin}/down/${index}?status=404`,
    );
    const job = jobFile(failing, { concurrency: 1, maxFailureRatio: 0.5 });
    const result = await run([job.path, '--allow', '127.0.0.1']);

    expect(result.code).toBe(1);
    const manifest = JSON.parse(result.stdout) as Manifest;
    expect(manifest.status).toBe('failed');
  });

  it('exits 1 with one stderr line naming the item and field of a bad job, and fetches nothing', async () => {
    const job = jobFile([`${world.upstream.origin}/item/1`, 'ftp://example.invalid/file']);
    const result = await run([job.path, '--allow', '127.0.0.1']);

    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^fanout: .*items\[1\]\.url: invalid URL/);
    expect(world.upstream.hits()).toBe(0);
  });

  it.each([
    ['invalid JSON', '{"items": [', /invalid JSON/],
    [
      'an unknown option',
      JSON.stringify({ items: ['http://127.0.0.1/'], options: { speed: 11 } }),
      /options: unknown key speed/,
    ],
    [
      'an out-of-range option',
      JSON.stringify({ items: ['http://127.0.0.1/'], options: { concurrency: 5000 } }),
      /options\.concurrency: must be <= 1024/,
    ],
  ])('exits 1 with one stderr line for %s', async (_name, content, message) => {
    const path = world.dir.file(`bad-${++jobs}.json`, content);
    const result = await run([path]);

    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(message);
  });

  it('reads the job from stdin with -, with flags before the job argument', async () => {
    const jobId = `cli-run-stdin-${process.pid}`;
    const input = JSON.stringify({ jobId, items: [`${world.upstream.origin}/item/7`] });
    const result = await runCli(
      ['run', '--bucket', world.s3.bucket, '--allow', '127.0.0.1', '--progress', 'none', '-'],
      {
        env: s3Env(world.s3.endpoint),
        input,
      },
    );

    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ jobId, status: 'complete' });
  });

  it('refuses loopback destinations without --allow: each item fails BLOCKED_DESTINATION, exit 3', async () => {
    const job = jobFile([`${world.upstream.origin}/item/1`, `${world.upstream.origin}/item/2`]);
    const result = await run([job.path]);

    expect(result.code).toBe(3);
    const manifest = JSON.parse(result.stdout) as Manifest;
    expect(manifest.counts.failed).toBe(2);
    const errors = await linesOf(manifest.errors);
    expect(errors.map((line) => (line.error as { code: string }).code)).toEqual([
      'BLOCKED_DESTINATION',
      'BLOCKED_DESTINATION',
    ]);
    expect(world.upstream.hits()).toBe(0);
  });

  it('reprints the manifest of a complete job on a rerun, exits by its counts, and fetches nothing', async () => {
    const job = jobFile([`${world.upstream.origin}/item/1`, `${world.upstream.origin}/gone?status=410`]);
    const first = await run([job.path, '--allow', '127.0.0.1']);
    const hits = world.upstream.hits();
    const second = await run([job.path, '--allow', '127.0.0.1']);

    expect(first.code).toBe(3);
    expect(second.code).toBe(3);
    expect(world.upstream.hits()).toBe(hits);
    expect(JSON.parse(second.stdout)).toMatchObject({ jobId: job.jobId, status: 'complete', runs: 1 });
    // And says why nothing ran, and how to run the failed item again.
    expect(second.stderr).toContain(`job ${job.jobId} is already complete: nothing fetched`);
    expect(second.stderr).toContain(`fanout redrive ${job.jobId}\` re-runs its 1 failed item`);
    expect(first.stderr).not.toContain('already complete');
  });

  it('writes a JSON progress line to stderr when stderr is not a terminal', async () => {
    const job = jobFile([`${world.upstream.origin}/item/1`]);
    const result = await run([job.path, '--allow', '127.0.0.1']);

    const progress = result.stderr.split('\n').filter((line) => line.startsWith('{"type":"progress"'));
    expect(progress.length).toBeGreaterThan(0);
    expect(JSON.parse(progress.at(-1) ?? '{}')).toMatchObject({ done: 1, total: 1, succeeded: 1 });
  });

  it('--shards K runs the Distributed Map simulation and prints the merged manifest', async () => {
    const urls = Array.from({ length: 20 }, (_, index) => `${world.upstream.origin}/item/${index}`);
    const job = jobFile(urls);
    const result = await run([job.path, '--allow', '127.0.0.1', '--shards', '2']);

    expect(result.code).toBe(0);
    const manifest = JSON.parse(result.stdout) as Manifest;
    expect(manifest).toMatchObject({
      jobId: job.jobId,
      status: 'complete',
      counts: { total: 20, succeeded: 20 },
    });
    const results = await linesOf(manifest.results);
    expect(results.map((line) => line.url).sort()).toEqual([...urls].sort());
  });
});
