// `fanout show` and `--help` as subprocesses: a finished job's manifest with its first results and errors.
import { describe, expect, it } from 'vitest';
import type { Manifest } from '../../functions/core/types.ts';
import { runCli, s3Env, useCliWorld } from '../support/cli.ts';

const world = useCliWorld();

describe('fanout show', () => {
  it("prints a finished job's manifest with its first results and errors, read through the manifest", async () => {
    const jobId = `cli-show-${process.pid}`;
    const items = [
      ...Array.from({ length: 8 }, (_, index) => `${world.upstream.origin}/item/${index}`),
      `${world.upstream.origin}/broken?status=404`,
    ];
    const path = world.dir.file('show.json', { jobId, items });
    const env = s3Env(world.s3.endpoint);
    const ran = await runCli(
      ['run', path, '--bucket', world.s3.bucket, '--allow', '127.0.0.1', '--progress', 'none'],
      {
        env,
      },
    );
    expect(ran.code).toBe(3);

    const shown = await runCli(['show', jobId, '--bucket', world.s3.bucket, '--limit', '3'], { env });

    expect(shown.code).toBe(0);
    const output = JSON.parse(shown.stdout) as {
      manifest: Manifest;
      results: Array<{ id: string; url: string; status: number }>;
      errors: Array<{ error: { code: string } }>;
      pending: unknown[];
    };
    expect(output.manifest).toMatchObject({ jobId, status: 'complete', counts: { succeeded: 8, failed: 1 } });
    expect(output.results).toHaveLength(3);
    for (const line of output.results) {
      expect(items).toContain(line.url);
      expect(line.status).toBe(200);
    }
    expect(output.errors).toEqual([
      expect.objectContaining({ error: expect.objectContaining({ code: 'HTTP_STATUS' }) }),
    ]);
    expect(output.pending).toEqual([]);
  });

  it('exits 1 with one line when the job has no manifest', async () => {
    const shown = await runCli(['show', 'no-such-job', '--bucket', world.s3.bucket], {
      env: s3Env(world.s3.endpoint),
    });

    expect(shown.code).toBe(1);
    expect(shown.stdout).toBe('');
    expect(shown.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^fanout: no manifest for job no-such-job/),
    ]);
  });
});

describe('fanout --help', () => {
  it('lists every command and the settings, and exits 0', async () => {
    const help = await runCli(['--help']);

    expect(help.code).toBe(0);
    for (const command of ['run', 'invoke', 'show', 'redrive', 'serve', 'demo']) {
      expect(help.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    }
    expect(help.stdout).toContain('FANOUT_BUCKET');
  });

  it('documents the exit codes of run, and the job file may come before or after the flags', async () => {
    const help = await runCli(['run', '--help']);

    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Exit codes: 0 complete.*3 complete with failed items.*2 partial/s);
    expect(help.stdout).toContain('--allow-private');
    expect(help.stdout).toContain('--deadline');
  });

  it('answers a usage error with one stderr line and exit 1', async () => {
    const result = await runCli(['run', 'job.json', '--no-such-flag']);

    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([
      "fanout: unknown option '--no-such-flag' (see fanout run --help)",
    ]);
  });
});
