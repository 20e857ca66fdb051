// The store suite against a real S3 (radosgw via `npm run test:s3-real`): endpoint and keys from the env.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/integration/s3-real/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
