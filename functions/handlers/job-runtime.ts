// What a deployment decides for every job a handler runs: store, policy, deadline, log, transform pool.
import type { S3Client } from '@aws-sdk/client-s3';
import type { Context } from 'aws-lambda';
import { createS3Client } from '../adapters/s3-client.ts';
import {
  type Clock,
  createTransformPool,
  type JobRuntime,
  type LookupAll,
  type StoreConfig,
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
  transformRunner?: TransformRunner;
  lookup?: LookupAll;
}

export interface ResolvedDeps {
  config: HandlerConfig;
  store: StoreConfig;
  dispatcher: RunnerDispatcher;
  clock: Clock;
  transformRunner: TransformRunner;
  lookup: LookupAll | undefined;
}

export function resolveDeps(deps: HandlerDeps): ResolvedDeps {
  const { config } = deps;
  return {
    config,
    store: { client: deps.s3 ?? createS3Client(process.env), bucket: config.bucket, prefix: config.prefix },
    dispatcher: deps.dispatcher ?? createRunnerDispatcher(config),
    clock: deps.clock ?? systemClock,
    transformRunner: deps.transformRunner ?? sharedTransformRunner,
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
    transformRunner: timed(deps.transformRunner, figures),
    onProgress: (progress) => {
      figures.progress = progress;
    },
  };
  if (deps.lookup) runtime.lookup = deps.lookup;
  return runtime;
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
