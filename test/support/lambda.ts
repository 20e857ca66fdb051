// Handler test kit: fake contexts on injected clocks, captured Powertools output, events, a recording dispatcher.

import { readFileSync } from 'node:fs';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { Clock } from '../../functions/core/index.ts';
import type { HandlerConfig } from '../../functions/handlers/config.ts';
import type { RunnerDispatcher } from '../../functions/handlers/dispatch.ts';
import { createShell, type Shell } from '../../functions/handlers/lambda-shell.ts';
import type { RunnerReply, RunSummary } from '../../functions/handlers/runner.ts';
import type { DispatchEvent } from '../../functions/handlers/runner-events.ts';

export { createFakeContext, invokeHandler } from '../../functions/local/invoke.ts';

/** The placeholder origin the sample events use; tests point it at the local upstream. */
export const PLACEHOLDER_ORIGIN = 'https://api.example.com/';

export function loadEvent(name: string, upstreamUrl?: string): Record<string, unknown> {
  let text = readFileSync(new URL(`../../events/${name}`, import.meta.url), 'utf8');
  if (upstreamUrl) text = text.replaceAll(PLACEHOLDER_ORIGIN, upstreamUrl);
  return JSON.parse(text) as Record<string, unknown>;
}

export function testConfig(overrides: Partial<HandlerConfig> = {}): HandlerConfig {
  return {
    bucket: 'fanout-test',
    prefix: 'jobs',
    allow: ['127.0.0.1'],
    syncMaxItems: 100,
    maxItems: 10_000,
    maxRequestBytes: 1024 * 1024,
    runnerFunction: 'fanout-runner',
    stateMachineArn: undefined,
    maxContinuations: 20,
    deadlineMarginMs: 3_000,
    localDispatch: undefined,
    gzip: false,
    tracing: false,
    mapBatchSize: 1_000,
    mapConcurrency: 40,
    mapMinItems: 5_000,
    ...overrides,
  };
}

/** A dispatcher that records what would have been invoked; the test runs it when it chooses. */
export interface RecordingDispatcher extends RunnerDispatcher {
  events: DispatchEvent[];
}

export function recordingDispatcher(): RecordingDispatcher {
  const events: DispatchEvent[] = [];
  return {
    events,
    dispatch: async (event) => {
      events.push(event);
    },
    drain: async () => {},
  };
}

/** Powertools writing JSON lines into arrays instead of stdout: logs and EMF blobs a test can read. */
export interface CapturedShell {
  shell: Shell;
  logs: Array<Record<string, unknown>>;
  metrics: Array<Record<string, unknown>>;
}

export function capturedShell(): CapturedShell {
  const logs: Array<Record<string, unknown>> = [];
  const metricLines: Array<Record<string, unknown>> = [];
  const sink = (into: Array<Record<string, unknown>>) =>
    ({
      log: (line: string) => into.push(JSON.parse(line) as Record<string, unknown>),
      info: (line: string) => into.push(JSON.parse(line) as Record<string, unknown>),
      warn: (line: string) => into.push(parseOrWrap(line)),
      error: (line: string) => into.push(parseOrWrap(line)),
      debug: (line: string) => into.push(parseOrWrap(line)),
      trace: (line: string) => into.push(parseOrWrap(line)),
    }) as unknown as Console; // Powertools calls only these methods of its console.
  const logger = new Logger({ serviceName: 'fanout', logLevel: 'INFO' });
  const metrics = new Metrics({ namespace: 'fanout', serviceName: 'fanout' });
  // Powertools keeps its Console on a protected field; replacing it is the documented test approach.
  (logger as unknown as { console: Console }).console = sink(logs);
  (metrics as unknown as { console: Console }).console = sink(metricLines);
  return { shell: createShell({ logger, metrics }), logs, metrics: metricLines };
}

function parseOrWrap(line: string): Record<string, unknown> {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { message: line };
  }
}

/** A clock tests move by hand; `sleep` resolves once the clock has been moved past its end. */
export class ManualClock implements Clock {
  #now: number;
  #sleepers = new Set<{ until: number; resolve: () => void }>();

  constructor(start = Date.UTC(2026, 10, 25, 2, 0, 0)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  advance(ms: number): void {
    this.#now += ms;
    for (const sleeper of this.#sleepers) {
      if (sleeper.until <= this.#now) {
        this.#sleepers.delete(sleeper);
        sleeper.resolve();
      }
    }
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const sleeper = {
        until: this.#now + ms,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        this.#sleepers.delete(sleeper);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#sleepers.add(sleeper);
    });
  }
}

/**
 * A clock driven by the upstream's hit counter: each request the upstream sees moves time `msPerHit`
 * on. A deadline then falls after a known number of fetches, whatever the machine's speed.
 */
export function hitClock(hits: () => number, msPerHit: number, start = Date.now()): Clock {
  const now = (): number => start + hits() * msPerHit;
  return {
    now,
    sleep: (ms, signal) => {
      signal?.throwIfAborted();
      const until = now() + Math.max(0, ms);
      if (now() >= until) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const finish = (): void => {
          clearInterval(poll);
          signal?.removeEventListener('abort', onAbort);
        };
        const onAbort = (): void => {
          finish();
          reject(signal?.reason);
        };
        const poll = setInterval(() => {
          if (now() < until) return;
          finish();
          resolve();
        }, 2);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
  };
}

/** Narrows the runner's reply to a job run's summary; a batch or started reply here is a test failure. */
export function asRunSummary(reply: RunnerReply): RunSummary {
  if (!('runs' in reply) || !('counts' in reply)) {
    throw new Error(`expected a run summary, got ${JSON.stringify(reply).slice(0, 200)}`);
  }
  return reply;
}
