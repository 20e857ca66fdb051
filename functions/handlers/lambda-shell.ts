// The middy + Powertools shell both handlers share: structured logs, EMF metrics, optional tracing.
import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy, { type MiddlewareObj } from '@middy/core';
import type { Context } from 'aws-lambda';
import type { LogSink, Manifest, Progress } from '../core/index.ts';

const SERVICE_NAME = 'fanout';
const METRICS_NAMESPACE = 'fanout';

export type ShellHandler<TEvent, TResult> = (
  event: TEvent,
  context: Context,
  options: { signal: AbortSignal },
) => Promise<TResult>;

export interface Shell {
  logger: Logger;
  metrics: Metrics;
  /** The handler wrapped in middy: logger context (keys reset per invocation), metrics flushed per invocation. */
  wrap<TEvent, TResult>(handler: ShellHandler<TEvent, TResult>): middy.MiddyfiedHandler<TEvent, TResult>;
}

export interface ShellOptions {
  tracing?: boolean;
  /** Test seams: Powertools instances writing where a test can read. */
  logger?: Logger;
  metrics?: Metrics;
}

export function createShell(options: ShellOptions = {}): Shell {
  const logger = options.logger ?? new Logger({ serviceName: SERVICE_NAME });
  const metrics = options.metrics ?? new Metrics({ namespace: METRICS_NAMESPACE, serviceName: SERVICE_NAME });
  return {
    logger,
    metrics,
    wrap: (handler) => {
      const wrapped = middy(handler)
        .use(injectLambdaContext(logger, { resetKeys: true }))
        .use(logMetrics(metrics, { captureColdStartMetric: true }));
      return options.tracing ? wrapped.use(lazyTracer()) : wrapped;
    },
  };
}

/** The core's log sink on a Powertools Logger (job id and other appended keys ride on every line). */
export function toLogSink(logger: Logger): LogSink {
  return {
    debug: (message, fields) => logger.debug(message, fields ?? {}),
    info: (message, fields) => logger.info(message, fields ?? {}),
    warn: (message, fields) => logger.warn(message, fields ?? {}),
    error: (message, fields) => logger.error(message, fields ?? {}),
  };
}

/** Per-invocation figures the handler gathers around a run; flushed as EMF by logMetrics. */
export interface RunFigures {
  /** The last progress snapshot of this run (its own counts, not the job's cumulative ones). */
  progress: Progress | undefined;
  transformCount: number;
  transformTotalMs: number;
  transformMaxMs: number;
}

export function emptyRunFigures(): RunFigures {
  return { progress: undefined, transformCount: 0, transformTotalMs: 0, transformMaxMs: 0 };
}

export function recordRunMetrics(metrics: Metrics, manifest: Manifest, figures: RunFigures): void {
  const progress = figures.progress;
  if (progress) {
    metrics.addMetric('ItemsSucceeded', MetricUnit.Count, progress.succeeded);
    metrics.addMetric('ItemsFailed', MetricUnit.Count, progress.failed);
    metrics.addMetric('ItemsPending', MetricUnit.Count, progress.pending);
    metrics.addMetric('Retries', MetricUnit.Count, progress.retries);
  } else {
    // No progress means nothing ran (a complete job returned as is): report where the job stands.
    metrics.addMetric('ItemsPending', MetricUnit.Count, manifest.counts.pending);
  }
  const hosts = Object.values(manifest.hosts ?? {});
  if (hosts.length > 0) {
    // The manifest keeps per-origin percentiles only: the worst p95 is the honest aggregate, and the
    // request-weighted mean of p50s a fair summary of the typical fetch.
    const requests = hosts.reduce((sum, host) => sum + host.requests, 0);
    const p50 =
      requests === 0 ? 0 : hosts.reduce((sum, host) => sum + host.p50Ms * host.requests, 0) / requests;
    metrics.addMetric('FetchLatencyP50', MetricUnit.Milliseconds, Math.round(p50));
    metrics.addMetric(
      'FetchLatencyP95',
      MetricUnit.Milliseconds,
      Math.max(...hosts.map((host) => host.p95Ms)),
    );
  }
  if (figures.transformCount > 0) {
    metrics.addMetric(
      'TransformTimeAvg',
      MetricUnit.Milliseconds,
      Math.round(figures.transformTotalMs / figures.transformCount),
    );
    metrics.addMetric('TransformTimeMax', MetricUnit.Milliseconds, Math.round(figures.transformMaxMs));
  }
}

type AnyMiddleware = MiddlewareObj<unknown, unknown>;

/** Loads the tracer on the first invocation that needs it, so an untraced cold start never pays for it. */
function lazyTracer(): AnyMiddleware {
  let loading: Promise<AnyMiddleware> | undefined;
  const load = (): Promise<AnyMiddleware> => {
    loading ??= (async () => {
      // Literal imports: esbuild bundles the tracer (Lambda's runtime has no Powertools) but, without a
      // static import, evaluates it only here, on the first traced invocation.
      const { Tracer } = await import('@aws-lambda-powertools/tracer');
      const { captureLambdaHandler } = await import('@aws-lambda-powertools/tracer/middleware');
      return captureLambdaHandler(new Tracer({ serviceName: SERVICE_NAME })) as AnyMiddleware;
    })();
    return loading;
  };
  return {
    before: async (request) => (await load()).before?.(request),
    after: async (request) => (await load()).after?.(request),
    onError: async (request) => (await load()).onError?.(request),
  };
}
