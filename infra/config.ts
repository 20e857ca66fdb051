// The deployment's typed configuration: read from CDK context `fanout` or infra/fanout.config.json, validated by zod.
import { existsSync, readFileSync } from 'node:fs';
import * as z from 'zod';
import { DEFAULT_PREFIX, MAX_INLINE_ITEMS } from '../functions/core/defaults.ts';
import { JobValidationError } from '../functions/core/errors.ts';
import { formatPath, parseJob } from '../functions/core/job.ts';

/** Lambda gives one vCPU per 1,769 MB of memory (up to 6 vCPUs at 10,240 MB). */
export const MB_PER_VCPU = 1_769;
/** 2 vCPUs: the transform pool gets two real threads beside the event loop's I/O. */
export const DEFAULT_RUNNER_MEMORY_MB = 2 * MB_PER_VCPU;
/** 1 vCPU: the API validates and answers small jobs synchronously; heavy work goes to the runner. */
export const DEFAULT_API_MEMORY_MB = MB_PER_VCPU;
/** 15 minutes, Lambda's maximum: the runner continues itself past it. */
export const RUNNER_TIMEOUT_SECONDS = 900;
/** API Gateway HTTP APIs give up at 30 s: the API function must answer inside that. */
export const API_TIMEOUT_SECONDS = 28;

/** The retention periods CloudWatch Logs accepts (aws-logs RetentionDays). */
const LOG_RETENTION_DAYS: readonly number[] = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/, { error: 'must be [A-Za-z0-9-], up to 64' });
const bucketName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: 'must be an S3 bucket name' });
const int = (min: number, max: number) =>
  z
    .number({ error: 'must be a number' })
    .int({ error: 'must be an integer' })
    .min(min, { error: `must be >= ${min}` })
    .max(max, { error: `must be <= ${max}` });

const RetrySchema = z.strictObject({
  /** EventBridge Scheduler keeps retrying delivery for at most this long (60 s .. 24 h). */
  maxEventAgeSeconds: int(60, 86_400).default(3_600),
  /** Delivery attempts after the first (0 .. 185). */
  attempts: int(0, 185).default(3),
});

const ScheduleSchema = z.strictObject({
  name,
  /** `rate(1 hour)`, `cron(0 3 * * ? *)` or `at(2026-12-01T00:00:00)`. */
  expression: z
    .string()
    .regex(/^(rate|cron|at)\(.+\)$/, { error: 'must be rate(...), cron(...) or at(...)' }),
  timeZone: z.string().min(1).optional(),
  enabled: z.boolean().default(true),
  /**
   * A fanout job as written (inline items or `{ "source": { "s3": "s3://bucket/key" } }`): passed to the
   * runner unchanged, checked at synth time by the core's own parser.
   */
  job: z.record(z.string(), z.unknown(), { error: 'must be a job object' }),
  retry: RetrySchema.prefault({}),
});

const AuthSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('iam') }),
    z.strictObject({
      type: z.literal('jwt'),
      issuer: z.url({ error: 'must be an https URL' }),
      audience: z.array(z.string().min(1)).min(1, { error: 'must name at least one audience' }),
    }),
  ],
  { error: 'must be { "type": "iam" } or { "type": "jwt", "issuer", "audience" }' },
);

export const FanoutConfigSchema = z.strictObject({
  /** Results land under s3://<bucket>/<prefix>/<jobId>/. */
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*[A-Za-z0-9]$/, {
      error: 'must be a key prefix without slashes at the ends',
    })
    .default(DEFAULT_PREFIX),
  /** Result and error parts gzipped (`.jsonl.gz`). */
  gzip: z.boolean().default(false),
  /** Extra destinations for the network policy (grammar of --allow; "private" opens RFC 1918 and friends). */
  allow: z.array(z.string().min(1)).default([]),
  /** Buckets holding job sources (`source.s3`) that the runner and the state machine may read. */
  sourceBuckets: z.array(bucketName).default([]),
  /** Days after which job data expires; null keeps it forever. */
  expireAfterDays: int(1, 3_650).nullable().default(null),
  /** One of CloudWatch Logs' retention periods (1, 3, 5, 7, 14, 30, 60, 90, ... 3653 days). */
  logRetentionDays: int(1, 3_653)
    .refine((days) => LOG_RETENTION_DAYS.includes(days), {
      error: `must be one of ${LOG_RETENTION_DAYS.join(', ')}`,
    })
    .default(30),
  logLevel: z.enum(['DEBUG', 'INFO', 'WARN', 'ERROR']).default('INFO'),
  serviceName: name.default('fanout'),
  metricsNamespace: z.string().min(1).default('Fanout'),
  runner: z
    .strictObject({
      /** Sized in vCPUs: 1,769 MB buys one (128 .. 10,240 MB; 6 vCPUs at the top). */
      memoryMb: int(128, 10_240).default(DEFAULT_RUNNER_MEMORY_MB),
      /** null leaves the function on the account's unreserved pool. */
      reservedConcurrency: int(1, 10_000).nullable().default(null),
      /** Self-invocations after a deadline before a job stays partial. */
      maxContinuations: int(0, 1_000).default(20),
      /** Lambda's own retries of a failed asynchronous invocation (0 .. 2). */
      asyncRetryAttempts: int(0, 2).default(2),
      /** How long Lambda keeps an asynchronous event before giving up (60 s .. 6 h). */
      asyncMaxEventAgeSeconds: int(60, 21_600).default(21_600),
    })
    .prefault({}),
  api: z
    .strictObject({
      memoryMb: int(128, 10_240).default(DEFAULT_API_MEMORY_MB),
      reservedConcurrency: int(1, 10_000).nullable().default(null),
      /** Jobs with at most this many items run inside the request (200); larger ones are accepted (202). */
      syncMaxItems: int(1, 10_000).default(100),
      /** Inline items one request may carry (413 above); bigger jobs name an S3 source. */
      maxItems: int(1, MAX_INLINE_ITEMS).default(10_000),
      /** Request bodies above this are refused with 413 (Lambda's synchronous payload cap is 6 MB). */
      maxRequestBytes: int(1_024, 6 * 1024 * 1024).default(1024 * 1024),
      throttle: z
        .strictObject({ rateLimit: int(1, 10_000).default(50), burstLimit: int(1, 5_000).default(100) })
        .prefault({}),
      auth: AuthSchema.prefault({ type: 'iam' }),
    })
    .prefault({}),
  largeJobs: z
    .strictObject({
      /** Items per child execution (one runner invocation). */
      maxItemsPerBatch: int(1, 100_000).default(1_000),
      /** Child executions at once (Distributed Map allows up to 10,000). */
      maxConcurrency: int(1, 10_000).default(40),
    })
    .prefault({}),
  alarms: z
    .strictObject({
      /** Runner errors per 5 minutes that raise the alarm. */
      runnerErrors: int(1, 1_000_000).default(1),
      /** Undelivered events waiting in a dead-letter queue. */
      queueDepth: int(1, 1_000_000).default(1),
      /** Throttled invocations per 5 minutes. */
      throttles: int(1, 1_000_000).default(5),
    })
    .prefault({}),
  schedules: z.array(ScheduleSchema).default([]),
});

export type FanoutConfig = z.output<typeof FanoutConfigSchema>;
export type ScheduleConfig = FanoutConfig['schedules'][number];
export type AuthConfig = FanoutConfig['api']['auth'];

/** A configuration that does not validate: `message` names every bad field (`schedules[0].expression: ...`). */
export class FanoutConfigError extends Error {
  constructor(origin: string, problems: readonly string[]) {
    super(`fanout config (${origin}) is invalid: ${problems.join('; ')}`);
    this.name = 'FanoutConfigError';
  }
}

/** Validates a raw configuration; the schedules' jobs go through the core's own job parser too. */
export function parseFanoutConfig(input: unknown, origin = 'config'): FanoutConfig {
  const parsed = FanoutConfigSchema.safeParse(input ?? {});
  if (!parsed.success) {
    throw new FanoutConfigError(
      origin,
      parsed.error.issues.map((issue) => `${formatPath(issue.path) || '(root)'}: ${issue.message}`),
    );
  }
  const problems: string[] = [];
  parsed.data.schedules.forEach((schedule, index) => {
    const at = `schedules[${index}].job`;
    try {
      const job = parseJob(schedule.job);
      if (job.source && !parsed.data.sourceBuckets.includes(job.source.bucket)) {
        problems.push(`${at}.source.s3: bucket "${job.source.bucket}" is not in sourceBuckets`);
      }
    } catch (error) {
      if (!(error instanceof JobValidationError)) throw error;
      for (const issue of error.issues)
        problems.push(`${issue.path ? `${at}.${issue.path}` : at}: ${issue.message}`);
    }
  });
  const names = parsed.data.schedules.map((schedule) => schedule.name);
  const repeated = names.find((scheduleName, index) => names.indexOf(scheduleName) !== index);
  if (repeated !== undefined) problems.push(`schedules: the name "${repeated}" is used twice`);
  if (problems.length > 0) throw new FanoutConfigError(origin, problems);
  return parsed.data;
}

export const CONFIG_FILE = 'infra/fanout.config.json';
export const CONTEXT_KEY = 'fanout';

/**
 * The context value wins (`cdk synth -c fanout='{...}'` or cdk.json), then the file, then the defaults.
 * A context value given on the command line arrives as a JSON string.
 */
export function loadFanoutConfig(contextValue: unknown, configFile: string = CONFIG_FILE): FanoutConfig {
  if (contextValue !== undefined) {
    const raw =
      typeof contextValue === 'string' ? parseJsonText(contextValue, `context ${CONTEXT_KEY}`) : contextValue;
    return parseFanoutConfig(raw, `context ${CONTEXT_KEY}`);
  }
  if (existsSync(configFile)) {
    return parseFanoutConfig(parseJsonText(readFileSync(configFile, 'utf8'), configFile), configFile);
  }
  return parseFanoutConfig({}, 'defaults');
}

function parseJsonText(text: string, origin: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new FanoutConfigError(origin, [
      `not JSON (${error instanceof Error ? error.message : String(error)})`,
    ]);
  }
}
