// The runner and api handlers built for this process, sharing one in-process dispatcher the CLI can drain.
import type { Context } from 'aws-lambda';

export type LocalHandler = (event: unknown, context: Context) => Promise<unknown>;

export interface LocalHandlers {
  api: LocalHandler;
  runJob: LocalHandler;
  /** Resolves once every run a handler started asynchronously (202, continuations) has finished. */
  drain(): Promise<void>;
}

/** Lambda's longest invocation: the budget of a run started asynchronously. */
const RUNNER_REMAINING_MS = 900_000;

/**
 * The handlers as the stack builds them (same config from the same variables), except that a run they would
 * start with an asynchronous Lambda invoke runs here, through the local invoker, where `drain()` can wait for it.
 */
export async function createLocalHandlers(): Promise<LocalHandlers> {
  const [
    { loadConfig },
    { createApiHandler },
    { createRunJobHandler },
    { createInProcessDispatcher },
    { invokeHandler },
  ] = await Promise.all([
    import('../handlers/config.ts'),
    import('../handlers/jobs-api.ts'),
    import('../handlers/runner.ts'),
    import('../handlers/dispatch.ts'),
    import('../local/invoke.ts'),
  ]);
  const config = loadConfig(process.env);
  let runJob: LocalHandler | undefined;
  const dispatcher = createInProcessDispatcher(
    (event) => {
      if (!runJob) throw new Error('the runner is not built yet');
      return invokeHandler(runJob, event, {
        remainingMs: RUNNER_REMAINING_MS,
        functionName: 'fanout-runner',
      });
    },
    (error) => process.stderr.write(`fanout: a run started in-process failed: ${String(error)}\n`),
  );
  runJob = createRunJobHandler({ config, dispatcher }) as unknown as LocalHandler;
  const api = createApiHandler({ config, dispatcher }) as unknown as LocalHandler;
  return { api, runJob, drain: () => dispatcher.drain() };
}
