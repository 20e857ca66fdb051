// `npm start` in quick mode: the demo runs to completion, prints its speedup, and leaves its results in .fanout/.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, tempDir } from '../support/cli.ts';

const dir = tempDir('fanout-demo-');
afterAll(() => dir.remove());

describe('npm start (the demo)', () => {
  it('completes in quick mode with exit 0 and reports an extrapolated baseline and the speedup', async () => {
    const result = await runCli([], {
      command: { file: 'npm', args: ['start', '--silent', '--', '--quick'] },
      env: { FANOUT_LOCAL_DIR: join(dir.path, '.fanout') },
      killAfterMs: 120_000,
    });

    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/sequential\s+\d+(\.\d)? s\s+extrapolated from \d+ of 200 items/);
    expect(result.stdout).toMatch(/speedup\s+\d+(\.\d)?x/);
    expect(result.stdout).toMatch(/199 succeeded, 1 failed, 0 pending \(of 200\)/);
    expect(result.stdout).toMatch(/failures\s+HTTP_STATUS 1/);
    expect(result.stdout).toMatch(/npx fanout show demo-\S+-fanout/);
    expect(existsSync(join(dir.path, '.fanout', 's3'))).toBe(true);
  });
});
