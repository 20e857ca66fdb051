// The deployment config: defaults, sources (context beats file), and rejections that name the bad field.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_RUNNER_MEMORY_MB,
  FanoutConfigError,
  loadFanoutConfig,
  parseFanoutConfig,
} from '../../infra/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'fanout-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseFanoutConfig', () => {
  it('fills every default from an empty config', () => {
    const config = parseFanoutConfig({});
    expect(config).toMatchObject({
      prefix: 'jobs',
      allow: [],
      sourceBuckets: [],
      expireAfterDays: null,
      logRetentionDays: 30,
      runner: {
        memoryMb: DEFAULT_RUNNER_MEMORY_MB,
        reservedConcurrency: null,
        maxContinuations: 20,
        asyncRetryAttempts: 2,
      },
      api: {
        syncMaxItems: 100,
        maxItems: 10_000,
        auth: { type: 'iam' },
        throttle: { rateLimit: 50, burstLimit: 100 },
      },
      largeJobs: { maxItemsPerBatch: 1_000, maxConcurrency: 40 },
      schedules: [],
    });
  });

  it.each([
    [{ runner: { memoryMb: 20_000 } }, 'runner.memoryMb: must be <= 10240'],
    [{ logRetentionDays: 31 }, 'logRetentionDays: must be one of 1, 3, 5'],
    [{ api: { auth: { type: 'jwt', issuer: 'https://issuer.example.com' } } }, 'api.auth.audience'],
    [{ api: { auth: { type: 'cognito' } } }, 'api.auth.type: must be'],
    [{ unknownKey: 1 }, 'unknownKey'],
    [
      { schedules: [{ name: 'x', expression: 'every day', job: { items: ['https://a.example'] } }] },
      'schedules[0].expression: must be rate(...), cron(...) or at(...)',
    ],
    [
      { schedules: [{ name: 'x', expression: 'rate(1 hour)', job: { items: ['ftp://a.example/'] } }] },
      'schedules[0].job.items[0].url',
    ],
    [
      {
        schedules: [
          { name: 'x', expression: 'rate(1 hour)', job: { items: [], options: { concurrency: 0 } } },
        ],
      },
      'schedules[0].job.options.concurrency: must be >= 1',
    ],
    [
      {
        schedules: [
          { name: 'x', expression: 'rate(1 hour)', job: { source: { s3: 's3://other-bucket/a.jsonl' } } },
        ],
      },
      'schedules[0].job.source.s3: bucket "other-bucket" is not in sourceBuckets',
    ],
    [
      {
        schedules: [
          { name: 'x', expression: 'rate(1 hour)', job: { items: ['https://a.example/'] } },
          { name: 'x', expression: 'rate(2 hours)', job: { items: ['https://b.example/'] } },
        ],
      },
      'the name "x" is used twice',
    ],
  ])('rejects %j naming the field', (input, message) => {
    expect(() => parseFanoutConfig(input)).toThrow(FanoutConfigError);
    expect(() => parseFanoutConfig(input)).toThrow(message);
  });

  it('keeps a schedule job exactly as written (the runner applies the defaults)', () => {
    const job = { items: ['https://a.example/'], options: { concurrency: 2 } };
    const config = parseFanoutConfig({ schedules: [{ name: 'n', expression: 'rate(1 day)', job }] });
    expect(config.schedules[0]?.job).toEqual(job);
    expect(config.schedules[0]?.retry).toEqual({ maxEventAgeSeconds: 3_600, attempts: 3 });
  });
});

describe('loadFanoutConfig', () => {
  const file = join(dir, 'fanout.config.json');
  writeFileSync(file, JSON.stringify({ prefix: 'from-file' }));

  it('reads the file when no context is given', () => {
    expect(loadFanoutConfig(undefined, file).prefix).toBe('from-file');
  });

  it('prefers the context value, as an object or as the JSON string `cdk -c` passes', () => {
    expect(loadFanoutConfig({ prefix: 'from-context' }, file).prefix).toBe('from-context');
    expect(loadFanoutConfig('{"prefix":"from-cli"}', file).prefix).toBe('from-cli');
  });

  it('falls back to the defaults without either', () => {
    expect(loadFanoutConfig(undefined, join(dir, 'missing.json')).prefix).toBe('jobs');
  });

  it('says which source is not JSON', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ prefix: ');
    expect(() => loadFanoutConfig(undefined, bad)).toThrow(`fanout config (${bad}) is invalid: not JSON`);
  });
});

describe('infra/fanout.config.example.json', () => {
  it('is a valid configuration', () => {
    const config = loadFanoutConfig(
      undefined,
      join(import.meta.dirname, '../../infra/fanout.config.example.json'),
    );
    expect(config.schedules.map((schedule) => schedule.name)).toEqual(['nightly-prices', 'weekly-catalog']);
  });
});
