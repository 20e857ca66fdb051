// The pool once bundled by esbuild: the handler bundle plus bundle-workers' output, run by plain node
// in a folder where no node_modules is reachable.
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { bundleWorkers } from '../../infra/bundle-workers.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ENTRY = join(ROOT, 'test/fixtures/transforms/bundle-entry.ts');
const FIXTURE_WORKER = join(ROOT, 'test/fixtures/transforms/worker.ts');
const folders: string[] = [];

async function folder(): Promise<string> {
  const created = await mkdtemp(join(tmpdir(), 'fanout-pool-bundle-'));
  folders.push(created);
  return created;
}

/** Bundles the test entry the way the Lambda handler is bundled: one ESM file, minified. */
async function bundleHandler(outDir: string): Promise<void> {
  await build({
    entryPoints: [ENTRY],
    outfile: join(outDir, 'index.mjs'),
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    minify: true,
    logLevel: 'warning',
  });
}

async function runBundle(
  dir: string,
): Promise<Record<string, { ok: boolean; value?: unknown; message?: string }>> {
  // Only PATH: no NODE_PATH or NODE_OPTIONS from the test runner may help resolution.
  const { stdout } = await run(process.execPath, [join(dir, 'index.mjs')], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '' },
  });
  return JSON.parse(stdout);
}

async function noNodeModulesAbove(dir: string): Promise<boolean> {
  for (let current = dir; ; current = dirname(current)) {
    if ((await readdir(current)).includes('node_modules')) return false;
    if (dirname(current) === current) return true;
  }
}

afterAll(async () => {
  await Promise.all(folders.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('the bundled transform pool', () => {
  it('runs transforms in a worker thread from a bundle folder with no node_modules in reach', async () => {
    const staging = await folder();
    await bundleHandler(staging);
    const files = await bundleWorkers({ outDir: staging, workerEntry: FIXTURE_WORKER });
    expect(files.map((file) => file.slice(staging.length + 1))).toEqual([
      'transform-worker.mjs',
      'piscina/index.cjs',
      'piscina/worker.js',
      'piscina/package.json',
    ]);
    // Copied elsewhere, as the Lambda asset is: nothing may point back into the repository.
    const deployed = await folder();
    await cp(staging, deployed, { recursive: true });
    expect(await noNodeModulesAbove(deployed)).toBe(true);

    const output = await runBundle(deployed);
    expect(output.thread).toMatchObject({ ok: true, value: { bytes: 1 } });
    const threadId = (output.thread?.value as { threadId?: number } | undefined)?.threadId;
    expect(threadId).toBeGreaterThan(0);
    expect(output.html).toEqual({
      ok: true,
      value: {
        title: 'Bundled',
        description: null,
        canonical: null,
        lang: null,
        links: ['https://example.com/up'],
        wordCount: 3,
      },
    });
    expect(output.words).toEqual({ ok: true, value: [{ word: 'zeta', count: 2 }] });
    expect(output.stats).toMatchObject({ pooled: 3, inline: 0, admitted: 0 });
  });

  it('bundles the real worker with the user transforms from the command line', async () => {
    const deployed = await folder();
    await bundleHandler(deployed);
    await run(process.execPath, [join(ROOT, 'infra/bundle-workers.ts'), deployed], { cwd: ROOT });
    const output = await runBundle(deployed);
    // thread-id exists only in the test worker; html and the example user transform are in the real one.
    expect(output.thread).toEqual({
      ok: false,
      code: 'TRANSFORM_ERROR',
      message: 'unknown transform "thread-id"',
    });
    expect(output.html).toMatchObject({ ok: true, value: { title: 'Bundled' } });
    expect(output.words).toEqual({ ok: true, value: [{ word: 'zeta', count: 2 }] });
  });
});
