// The handlers' configuration: environment variables set by the stack, validated once at cold start.
import * as z from 'zod';
import { defaults, FanoutError } from '../core/index.ts';

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Lambda's synchronous payload limit is 6 MB: a bigger request never reaches us. */
const MAX_REQUEST_BYTES_LIMIT = 6 * 1024 * 1024;

const integer = (fallback: number, min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, { error: `must be an integer between ${min} and ${max}` })
    .transform(Number)
    .pipe(
      z
        .number()
        .min(min, { error: `must be >= ${min}` })
        .max(max, { error: `must be <= ${max}` }),
    )
    .optional()
    .transform((value) => value ?? fallback);

/** "true" or "false" (or unset/empty: false). */
const flag = z
  .enum(['true', 'false', ''], { error: 'must be "true" or "false"' })
  .optional()
  .transform((value) => value === 'true');

const optionalText = z
  .string()
  .trim()
  .transform((value) => (value === '' ? undefined : value))
  .optional();

const EnvSchema = z.object({
  FANOUT_BUCKET: z
    .string({ error: 'is required (the results bucket)' })
    .trim()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: 'must be an S3 bucket name' }),
  FANOUT_PREFIX: z
    .string()
    .trim()
    .transform((value) => value.replace(/^\/+|\/+$/g, ''))
    .pipe(
      z
        .string()
        .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, { error: 'must be a key prefix like "jobs"' }),
    )
    .optional()
    .transform((value) => value ?? defaults.DEFAULT_PREFIX),
  FANOUT_ALLOW: z
    .string()
    .optional()
    .transform((value) =>
      (value ?? '')
        .split(',')
        .map((entry) => entry.trim())
        .filter((entry) => entry !== ''),
    ),
  FANOUT_SYNC_MAX_ITEMS: integer(100, 1, defaults.MAX_INLINE_ITEMS),
  FANOUT_MAX_ITEMS: integer(10_000, 1, defaults.MAX_INLINE_ITEMS),
  FANOUT_MAX_REQUEST_BYTES: integer(1024 * 1024, 1024, MAX_REQUEST_BYTES_LIMIT),
  FANOUT_RUNNER_FUNCTION: optionalText,
  FANOUT_STATE_MACHINE_ARN: optionalText,
  FANOUT_MAX_CONTINUATIONS: integer(20, 0, 1_000),
  // Measured (test/integration/handlers-flush.test.ts; fauxqs on loopback, 2 shared cores): from the
  // deadline to the handler's return (abort in-flight, close parts, write pending.jsonl and the manifest)
  // took 210-800 ms for jobs of 2,000-20,000 items with up to 20,000 pending lines. Real S3 adds
  // ~100-300 ms per sequential PUT/CompleteMultipartUpload at p99: 3 s keeps about 3x headroom.
  FANOUT_DEADLINE_MARGIN_MS: integer(3_000, 0, 60_000),
  // The Distributed Map plan must batch exactly as the stack's ItemBatcher does: the stack sets both.
  FANOUT_MAP_BATCH_SIZE: integer(1_000, 1, 100_000),
  FANOUT_MAP_CONCURRENCY: integer(40, 1, 10_000),
  FANOUT_MAP_MIN_ITEMS: integer(5_000, 1, 100_000_000),
  FANOUT_LOCAL_DISPATCH: z.enum(['inprocess'], { error: 'must be "inprocess" or unset' }).optional(),
  FANOUT_TRACING: flag,
  FANOUT_GZIP: flag,
});

export interface HandlerConfig {
  bucket: string;
  prefix: string;
  /** Destinations beyond the default policy: from the deployment, never from a job. */
  allow: string[];
  /** POST /jobs runs jobs of at most this many items synchronously. */
  syncMaxItems: number;
  /** Inline items the API accepts in one request. */
  maxItems: number;
  maxRequestBytes: number;
  /** The runner function invoked asynchronously for large jobs and continuations. */
  runnerFunction: string | undefined;
  stateMachineArn: string | undefined;
  maxContinuations: number;
  /** Time kept back from the Lambda deadline for flushing parts and the manifest. */
  deadlineMarginMs: number;
  /** 'inprocess': continuations and accepted jobs run in this process (fanout serve, tests). */
  localDispatch: 'inprocess' | undefined;
  tracing: boolean;
  /** Result and error parts as `.jsonl.gz`. */
  gzip: boolean;
  /** Items per Distributed Map batch (the ItemBatcher's MaxItemsPerBatch). */
  mapBatchSize: number;
  /** The map's MaxConcurrency: each batch gets this share of a host's budget. */
  mapConcurrency: number;
  /** Inline jobs with more items than this run as a Distributed Map when a state machine is set. */
  mapMinItems: number;
}

/** Reads and validates the environment; throws one FanoutError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): HandlerConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? 'environment');
      const value = env[name];
      return `${name}: ${issue.message}${value === undefined ? '' : ` (got ${JSON.stringify(value)})`}`;
    });
    throw new FanoutError('INVALID_CONFIG', `invalid configuration: ${problems.join('; ')}`);
  }
  const value = parsed.data;
  return {
    bucket: value.FANOUT_BUCKET,
    prefix: value.FANOUT_PREFIX,
    allow: value.FANOUT_ALLOW,
    syncMaxItems: value.FANOUT_SYNC_MAX_ITEMS,
    maxItems: value.FANOUT_MAX_ITEMS,
    maxRequestBytes: value.FANOUT_MAX_REQUEST_BYTES,
    runnerFunction: value.FANOUT_RUNNER_FUNCTION,
    stateMachineArn: value.FANOUT_STATE_MACHINE_ARN,
    maxContinuations: value.FANOUT_MAX_CONTINUATIONS,
    deadlineMarginMs: value.FANOUT_DEADLINE_MARGIN_MS,
    localDispatch: value.FANOUT_LOCAL_DISPATCH,
    tracing: value.FANOUT_TRACING,
    gzip: value.FANOUT_GZIP,
    mapBatchSize: value.FANOUT_MAP_BATCH_SIZE,
    mapConcurrency: value.FANOUT_MAP_CONCURRENCY,
    mapMinItems: value.FANOUT_MAP_MIN_ITEMS,
  };
}

/** The job-id grammar of DESIGN.md, for ids that arrive outside a job (headers, paths, events). */
export function isJobId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}
