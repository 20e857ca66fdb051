// The local world most integration files share: one fault-injecting upstream and one test S3 per file.
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { startTestS3, type TestS3 } from './s3.ts';
import { startUpstream, type Upstream } from './upstream.ts';

export interface LocalWorld {
  upstream: Upstream;
  s3: TestS3;
}

/**
 * Starts a LocalWorld before the file's tests and stops it after them; read its fields inside tests only
 * (they are filled in by beforeAll). The upstream's counters are reset before each test.
 */
export function useLocalWorld(): LocalWorld {
  const world = {} as LocalWorld;
  beforeAll(async () => {
    [world.upstream, world.s3] = await Promise.all([startUpstream(), startTestS3()]);
  });
  afterAll(async () => {
    await Promise.all([world.upstream.close(), world.s3.stop()]);
  });
  beforeEach(() => world.upstream.reset());
  return world;
}
