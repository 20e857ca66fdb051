// Starting the runner asynchronously: a Lambda 'Event' invoke in AWS, the same handler in-process locally.
import { FanoutError } from '../core/index.ts';
import type { HandlerConfig } from './config.ts';
import type { DispatchEvent } from './runner-events.ts';

export interface RunnerDispatcher {
  /** Resolves once the runner is started (queued by Lambda), not when it finishes. */
  dispatch(event: DispatchEvent): Promise<void>;
  /** Waits for every in-process run started so far (a no-op for Lambda). */
  drain(): Promise<void>;
}

/** The local runner budget: as long as the longest Lambda invocation (15 minutes). */
const LOCAL_REMAINING_MS = 900_000;

/**
 * The one in-process dispatcher of this module instance (FANOUT_LOCAL_DISPATCH): every handler here, and
 * the runs they start, share it, so one drain waits for all of them.
 */
let inProcess: RunnerDispatcher | undefined;

/**
 * Waits for every run the handlers started in this process (a 202's run, continuations, and what those
 * start in turn): what a local invoke of a bundle calls after the handler returns.
 */
export async function drainInProcessRuns(): Promise<void> {
  await inProcess?.drain();
}

/** FANOUT_LOCAL_DISPATCH=inprocess runs the runner here (fanout serve); otherwise FANOUT_RUNNER_FUNCTION. */
export function createRunnerDispatcher(config: HandlerConfig): RunnerDispatcher {
  if (config.localDispatch === 'inprocess') {
    inProcess ??= createInProcessDispatcher(async (event) => {
      const [{ handler }, { invokeHandler }] = await Promise.all([
        import('./run-job.ts'),
        import('../local/invoke.ts'),
      ]);
      return invokeHandler(handler, event, {
        remainingMs: LOCAL_REMAINING_MS,
        functionName: 'fanout-runner',
      });
    });
    return inProcess;
  }
  return createLambdaDispatcher(config.runnerFunction);
}

export function createLambdaDispatcher(functionName: string | undefined): RunnerDispatcher {
  // Loaded on first use: only runs that continue or accept large jobs pay for the Lambda client.
  let client: Promise<import('@aws-sdk/client-lambda').LambdaClient> | undefined;
  return {
    async dispatch(event) {
      if (functionName === undefined) {
        throw new FanoutError(
          'NO_RUNNER',
          'FANOUT_RUNNER_FUNCTION is not set: cannot start the runner asynchronously',
        );
      }
      client ??= import('@aws-sdk/client-lambda').then(({ LambdaClient }) => new LambdaClient({}));
      const { InvokeCommand } = await import('@aws-sdk/client-lambda');
      const reply = await (await client).send(
        new InvokeCommand({
          FunctionName: functionName,
          InvocationType: 'Event',
          Payload: new TextEncoder().encode(JSON.stringify(event)),
        }),
      );
      if (reply.StatusCode !== 202) {
        throw new FanoutError(
          'DISPATCH_FAILED',
          `async invoke of ${functionName} answered ${reply.StatusCode}`,
        );
      }
    },
    drain: async () => {},
  };
}

/**
 * Runs each dispatched event in this process after the caller returns, like Lambda's async queue;
 * `onError` sees a run that failed (Lambda would retry it twice; locally it is logged).
 */
export function createInProcessDispatcher(
  run: (event: DispatchEvent) => Promise<unknown>,
  onError: (error: unknown, event: DispatchEvent) => void = (error, event) =>
    console.error(JSON.stringify({ message: 'in-process runner failed', event, error: String(error) })),
): RunnerDispatcher {
  const running = new Set<Promise<void>>();
  return {
    async dispatch(event) {
      const started = new Promise<void>((resolve) => setImmediate(resolve))
        .then(() => run(event))
        .then(
          () => undefined,
          (error: unknown) => onError(error, event),
        )
        .finally(() => running.delete(started));
      running.add(started);
    },
    async drain() {
      // A run may dispatch its own continuation: loop until nothing is left.
      while (running.size > 0) await Promise.all(running);
    },
  };
}
