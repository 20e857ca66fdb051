// What a deployment decides for every job a handler runs: store, policy, deadline, log, transform pool.
import type { S3Client } from '@aws-sdk/client-s3';
import type { Context } from 'aws-lambda';
import { createS3Client } from '../adapters/s3-client.ts';
import {
  type Clock,
  createTransformPool,
  type JobRuntime,
  type LookupAll,
  type Outcome,
  type StoreConfig,
  startFanOut,
  systemClock,
  type TransformPool,
  type TransformRunner,
} from '../core/index.ts';
import type { HandlerConfig } from './config.ts';
import { createRunnerDispatcher, type RunnerDispatcher } from './dispatch.ts';
import { type RunFigures, type Shell, toLogSink } from './lambda-shell.ts';

/** Everything a handler factory takes; all but `config` default to the deployment's real ones. */
export interface HandlerDeps {
  config: HandlerConfig;
  s3?: S3Client;
  dispatcher?: RunnerDispatcher;
  clock?: Clock;
  shell?: Shell;
  /** 'inline': transforms run on the event loop (the engine's own path), for tests. */
  transformRunner?: TransformRunner | 'inline';
  lookup?: LookupAll;
}

export interface ResolvedDeps {
  config: HandlerConfig;
  store: StoreConfig;
  dispatcher: RunnerDispatcher;
  clock: Clock;
  transformRunner: TransformRunner | undefined;
  lookup: LookupAll | undefined;
}

export function resolveDeps(deps: HandlerDeps): ResolvedDeps {
  const { config } = deps;
  return {
    config,
    store: {
      client: deps.s3 ?? createS3Client(process.env),
      bucket: config.bucket,
      prefix: config.prefix,
      ...(config.gzip ? { gzip: true } : {}),
    },
    dispatcher: deps.dispatcher ?? createRunnerDispatcher(config),
    clock: deps.clock ?? systemClock,
    transformRunner:
      deps.transformRunner === 'inline' ? undefined : (deps.transformRunner ?? sharedTransformRunner),
    lookup: deps.lookup,
  };
}

/**
 * The Lambda deadline converted once (STYLE 4.8): remaining time minus the margin that flushing the
 * open parts and the manifest needs, as an absolute time on the handler's clock.
 */
export function deadlineFrom(context: Context, clock: Clock, marginMs: number): number {
  return clock.now() + Math.max(0, context.getRemainingTimeInMillis() - marginMs);
}

export function buildRuntime(
  deps: ResolvedDeps,
  shell: Shell,
  context: Context,
  signal: AbortSignal,
  figures: RunFigures,
): JobRuntime {
  const runtime: JobRuntime = {
    allow: deps.config.allow,
    signal,
    deadline: deadlineFrom(context, deps.clock, deps.config.deadlineMarginMs),
    clock: deps.clock,
    store: deps.store,
    log: toLogSink(shell.logger),
    onProgress: (progress) => {
      figures.progress = progress;
    },
    startFanOut: (items, options, engineRuntime) => {
      const run = startFanOut(items, options, engineRuntime);
      return { ...run, outcomes: logFailures(run.outcomes, shell) };
    },
  };
  if (deps.transformRunner) runtime.transformRunner = timed(deps.transformRunner, figures);
  if (deps.lookup) runtime.lookup = deps.lookup;
  return runtime;
}

/**
 * Each failed item logged once with its code, as its outcome passes to the store. Once: a failed item
 * is committed to an errors part and never fetched again by a later run of the job.
 */
async function* logFailures(
  outcomes: AsyncIterableIterator<Outcome>,
  shell: Shell,
): AsyncIterableIterator<Outcome> {
  for await (const outcome of outcomes) {
    if (!outcome.ok && outcome.pending !== true) {
      const { id, url, error, attempts, ms } = outcome;
      shell.logger.warn('item failed', {
        itemId: id,
        url,
        code: error.code,
        status: error.status,
        attempts,
        ms,
      });
    }
    yield outcome;
  }
}

// One pool per execution environment, created on the first transform and reused while warm: worker
// start-up is paid once per cold start, not once per invocation.
let sharedPool: TransformPool | undefined;
const sharedTransformRunner: TransformRunner = (response, spec, signal) => {
  sharedPool ??= createTransformPool();
  return sharedPool.run(response, spec, signal);
};

function timed(run: TransformRunner, figures: RunFigures): TransformRunner {
  return async (response, spec, signal) => {
    const startedAt = performance.now();
    try {
      return await run(response, spec, signal);
    } finally {
      const elapsedMs = performance.now() - startedAt;
      figures.transformCount++;
      figures.transformTotalMs += elapsedMs;
      figures.transformMaxMs = Math.max(figures.transformMaxMs, elapsedMs);
    }
  };
}
