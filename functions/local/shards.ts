// `fanout run --shards K`: the Distributed Map plan simulated locally (same batches, K runner processes, the merge).
//
// No local emulator runs a Distributed Map (aws-local-stepfunctions ignores ItemReader and ItemBatcher), so
// this plays the state machine's part: plan the job as the runner would, cut the batches the ItemBatcher
// would cut, hand each batch event to one of K child processes that run the real runner handler against
// the same S3, stop dispatching once the tolerated failure percentage is passed, then send the merge event.
import { type ChildProcess, fork } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type BatchEvent,
  batchEvents,
  DEFAULT_BATCH_SIZE,
  FanoutError,
  type JobRuntime,
  type Manifest,
  type MapPlan,
  parseJob,
  planBatches,
  readManifest,
} from '../core/index.ts';

export interface ShardedRequest {
  job: unknown;
  /** Child processes, each running one batch at a time: the map's MaxConcurrency. */
  shards: number;
  runtime: JobRuntime;
  /** The ItemBatcher's MaxItemsPerBatch (default: the stack's, 1,000). */
  batchSize?: number;
  /** Settings the children need to reach the same S3 (default: derived from the runtime's S3 client). */
  env?: Record<string, string>;
  /** Called after each batch, for progress. */
  onBatch?: (done: number, total: number) => void;
}

type ToChild = { event: unknown; remainingMs: number } | { exit: true };
type FromChild = { ok: true; reply: unknown } | { ok: false; error: { code: string; message: string } };

/** Runs a job as the state machine would, in `shards` processes; returns the merged manifest. */
export async function runSharded(request: ShardedRequest): Promise<Manifest> {
  const { job, runtime } = request;
  const { jobId } = parseJob(job);
  const existing = await readManifest(runtime.store, jobId, runtime.signal);
  if (existing?.status === 'complete') return existing;
  if (existing && [...existing.results, ...existing.errors].some((key) => !key.includes('/batches/'))) {
    throw new FanoutError(
      'NOT_SHARDED',
      `job ${jobId} was started by a single run: rerun it without --shards to resume it`,
    );
  }
  const plan = await planBatches(job, runtime, {
    batchSize: request.batchSize ?? DEFAULT_BATCH_SIZE,
    mapConcurrency: request.shards,
  });
  const env = { ...(await childEnv(runtime)), ...request.env };
  const workers = Array.from({ length: Math.max(1, Math.min(request.shards, plan.batches)) }, () =>
    startWorker(env),
  );
  try {
    await runBatches(plan, workers, request);
    await workers[0]?.invoke({ jobId, merge: true }, remainingMs(runtime));
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
  }
  const manifest = await readManifest(runtime.store, jobId, runtime.signal);
  if (!manifest) throw new FanoutError('NO_MANIFEST', `job ${jobId}: the merge wrote no manifest`);
  return manifest;
}

/** Feeds batches to free workers in source order; stops starting batches once too many failed. */
async function runBatches(plan: MapPlan, workers: Worker[], request: ShardedRequest): Promise<void> {
  const events = batchEvents(plan, request.runtime.store, request.runtime.signal)[Symbol.asyncIterator]();
  let done = 0;
  let failed = 0;
  let firstError: unknown;
  const tolerated = (): boolean =>
    (failed * 100) / Math.max(1, plan.batches) <= plan.toleratedFailurePercentage;
  const loop = async (worker: Worker): Promise<void> => {
    for (;;) {
      if (!tolerated() || request.runtime.signal?.aborted) return;
      // One reader for all loops: the generator is pulled by whichever worker is free, one at a time.
      const next: IteratorResult<BatchEvent> = await events.next();
      if (next.done) return;
      try {
        await worker.invoke(next.value, remainingMs(request.runtime));
      } catch (error) {
        // A batch the runner threw on (BATCH_ABORTED, an S3 failure) fails that child execution only.
        failed++;
        firstError ??= error;
      }
      request.onBatch?.(++done, plan.batches);
    }
  };
  await Promise.all(workers.map(loop));
  if (failed > 0) {
    request.runtime.log?.warn('batches failed', { failed, batches: plan.batches, error: String(firstError) });
  }
}

function remainingMs(runtime: JobRuntime): number {
  const now = runtime.clock?.now() ?? Date.now();
  return runtime.deadline === undefined ? 900_000 : Math.max(0, runtime.deadline - now);
}

/** The runner's configuration for the children: the same bucket, prefix, allow list and S3 endpoint. */
async function childEnv(runtime: JobRuntime): Promise<Record<string, string>> {
  const { store } = runtime;
  const env: Record<string, string> = {
    FANOUT_BUCKET: store.bucket,
    FANOUT_PREFIX: store.prefix ?? 'jobs',
    FANOUT_GZIP: store.gzip === true ? 'true' : 'false',
    FANOUT_ALLOW: (runtime.allow ?? []).join(','),
    // A partial merge stays partial, as a single `fanout run` does: rerun the job to resume it.
    FANOUT_MAX_CONTINUATIONS: '0',
    FANOUT_DEADLINE_MARGIN_MS: '1000',
    POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL ?? 'ERROR',
    POWERTOOLS_METRICS_DISABLED: 'true',
  };
  const config = store.client.config;
  if (config.isCustomEndpoint && config.endpoint) {
    const endpoint = await config.endpoint();
    env.AWS_ENDPOINT_URL_S3 = `${endpoint.protocol}//${endpoint.hostname}${endpoint.port ? `:${endpoint.port}` : ''}`;
    env.AWS_REGION = await config.region();
    // The embedded S3's static keys (it checks none); real endpoints keep the children's own chain.
    const credentials = await config.credentials();
    env.AWS_ACCESS_KEY_ID = credentials.accessKeyId;
    env.AWS_SECRET_ACCESS_KEY = credentials.secretAccessKey;
    if (credentials.sessionToken) env.AWS_SESSION_TOKEN = credentials.sessionToken;
  }
  return env;
}

interface Worker {
  invoke(event: unknown, remainingMs: number): Promise<unknown>;
  stop(): Promise<void>;
}

const THIS_FILE = fileURLToPath(import.meta.url);

function startWorker(env: Record<string, string>): Worker {
  const child: ChildProcess = fork(THIS_FILE, ['--child'], {
    env: { ...process.env, ...env },
    // The runner logs JSON to stdout (CloudWatch in AWS): dropped here; errors come back over IPC.
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  let waiting: { resolve(value: unknown): void; reject(error: unknown): void } | null = null;
  const exited = new Promise<void>((done) =>
    child.once('exit', () => {
      waiting?.reject(new FanoutError('SHARD_EXITED', `shard process ${child.pid} exited mid-batch`));
      waiting = null;
      done();
    }),
  );
  child.on('message', (message: FromChild) => {
    const current = waiting;
    waiting = null;
    if (!current) return;
    if (message.ok) current.resolve(message.reply);
    else current.reject(new FanoutError(message.error.code, message.error.message));
  });
  return {
    invoke(event, remaining) {
      return new Promise((resolveReply, reject) => {
        waiting = { resolve: resolveReply, reject };
        child.send({ event, remainingMs: remaining } satisfies ToChild);
      });
    },
    async stop() {
      if (child.exitCode === null && child.connected) child.send({ exit: true } satisfies ToChild);
      await exited;
    },
  };
}

/** The child: the real runner handler, one event at a time, replies over IPC. */
async function serveChild(): Promise<void> {
  const [{ createRunJobHandler }, { loadConfig }, { createS3Client }, { invokeHandler }] = await Promise.all([
    import('../handlers/runner.ts'),
    import('../handlers/config.ts'),
    import('../adapters/s3-client.ts'),
    import('./invoke.ts'),
  ]);
  const handler = createRunJobHandler({ config: loadConfig(process.env), s3: createS3Client(process.env) });
  process.on('message', (message: ToChild) => {
    if ('exit' in message) {
      process.disconnect();
      process.exit(0);
    }
    invokeHandler(handler, message.event, { remainingMs: message.remainingMs, functionName: 'fanout-runner' })
      .then(
        (reply) => process.send?.({ ok: true, reply } satisfies FromChild),
        (error: unknown) => {
          const code = (error as { code?: unknown } | null)?.code;
          const text = error instanceof Error ? error.message : String(error);
          process.send?.({
            ok: false,
            error: { code: typeof code === 'string' ? code : 'BATCH_FAILED', message: text },
          } satisfies FromChild);
        },
      )
      .catch(() => process.exit(1));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === THIS_FILE && process.argv.includes('--child')) {
  await serveChild();
}
