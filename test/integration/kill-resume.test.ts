// The property that matters most: a job killed with SIGKILL at random moments and rerun ends exactly once.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readManifest } from '../../functions/core/run.ts';
import { countIds, idsInParts, startTestS3, type TestS3 } from '../support/s3.ts';

const CHILD = fileURLToPath(new URL('../support/store-child.ts', import.meta.url));
const ITEMS = 400;
const MAX_RUNS = 60;

/** mulberry32: a tiny seeded PRNG, so each seed kills at the same moments every time. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Runs the child once; kills it `killAfterMs` after it says ready (null: let it finish). */
function runChild(
  s3: TestS3,
  jobId: string,
  killAfterMs: number | null,
): Promise<{ code: number | null; killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [CHILD, JSON.stringify({ endpoint: s3.endpoint, bucket: s3.bucket, jobId, items: ITEMS })],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let timer: NodeJS.Timeout | undefined;
    let killed = false;
    child.stdout.on('data', (chunk: Buffer) => {
      if (killAfterMs !== null && timer === undefined && chunk.toString().includes('ready')) {
        timer = setTimeout(() => {
          killed = child.kill('SIGKILL');
        }, killAfterMs);
      }
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, killed: killed && code === null });
    });
  });
}

describe('kill and resume', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startTestS3();
  });
  afterAll(async () => {
    await s3.stop();
  });

  it.each([1, 2, 3, 4])(
    'ends with every item exactly once after SIGKILLs at random moments (seed %i)',
    async (seed) => {
      const random = prng(seed);
      const jobId = `kill-${seed}`;
      let kills = 0;
      let runs = 0;
      for (;;) {
        runs++;
        expect(runs).toBeLessThanOrEqual(MAX_RUNS);
        // The first runs die early and late at random; every fifth is left alone so the job can finish.
        const killAfterMs = runs % 5 === 0 ? null : Math.floor(random() * 500);
        const { code, killed } = await runChild(s3, jobId, killAfterMs);
        if (killed) kills++;
        if (code === 0) break;
        expect([null, 0]).toContain(code);
      }
      expect(kills).toBeGreaterThan(0);

      const manifest = await readManifest({ client: s3.client, bucket: s3.bucket }, jobId);
      expect(manifest?.status).toBe('complete');
      // Several runs took part: the killed ones claimed run numbers and left checkpoints behind.
      expect(manifest?.runs).toBeGreaterThan(1);
      expect(manifest?.counts).toEqual({
        total: ITEMS,
        succeeded: ITEMS - Math.floor(ITEMS / 7),
        failed: Math.floor(ITEMS / 7),
        pending: 0,
        duplicates: 0,
      });
      const finishedKeys = [...(manifest?.results ?? []), ...(manifest?.errors ?? [])];
      const seen = countIds(await idsInParts(s3.getText, finishedKeys));
      expect(seen.size).toBe(ITEMS);
      expect([...seen.values()].filter((count) => count !== 1)).toEqual([]);
      // Debris of killed runs is removed by later runs: only listed parts (and the last run's) remain.
      const listed = new Set([...(manifest?.results ?? []), ...(manifest?.errors ?? [])]);
      const leftovers = (await s3.listKeys(`jobs/${jobId}/`)).filter(
        (key) => /\/(results|errors)\//.test(key) && !listed.has(key),
      );
      expect(leftovers).toEqual([]);
    },
  );
});
