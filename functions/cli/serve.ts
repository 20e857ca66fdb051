// `fanout serve`: the jobs API on 127.0.0.1, the api function behind a local stand-in for API Gateway.
import { Command, Option } from 'commander';
import { EXIT } from './errors.ts';
import { addStoreOptions, collectList, integerIn } from './flags.ts';
import { type HandlerEnvFlags, prepareHandlerEnv } from './handler-env.ts';

interface ServeFlags extends HandlerEnvFlags {
  port: number;
}

/** The deployed api function's timeout (infra/config.ts API_TIMEOUT_SECONDS): its time per request. */
export const API_REMAINING_MS = 28_000;

export function serveCommand(): Command {
  const command = new Command('serve')
    .summary('the jobs API on localhost, backed by the same handler (like sam local start-api)')
    .description(
      'Serve the jobs API (POST /jobs, GET /jobs/{id}, POST /jobs/{id}/redrive) on 127.0.0.1. This is a local ' +
        'stand-in for API Gateway, like `sam local start-api`: each request becomes an HTTP API (payload 2.0) ' +
        'event for the api function, run in this process. No authentication: it never listens beyond loopback.',
    );
  return addStoreOptions(command)
    .option('-p, --port <port>', 'port on 127.0.0.1 (0 picks a free one)', integerIn(0, 65_535), 3000)
    .addOption(
      new Option('--allow <hosts>', 'also allow these hosts or CIDRs, comma-separated')
        .env('FANOUT_ALLOW')
        .argParser(collectList),
    )
    .option('--allow-private', 'allow loopback, RFC 1918, CGNAT and ULA ranges (never link-local)')
    .action(async (flags: ServeFlags) => {
      await serve(flags);
    });
}

async function serve(flags: ServeFlags): Promise<void> {
  const say = (line: string): void => void process.stderr.write(`fanout: ${line}\n`);
  const opened = await prepareHandlerEnv(flags, say);
  try {
    const [{ createLocalHandlers }, { invokeHandler }, { startLocalApi }] = await Promise.all([
      import('./local-lambda.ts'),
      import('../local/invoke.ts'),
      import('../local/serve.ts'),
    ]);
    const handlers = await createLocalHandlers();
    const api = await startLocalApi({
      port: flags.port,
      invoke: (event) =>
        invokeHandler(handlers.api, event, { remainingMs: API_REMAINING_MS, functionName: 'fanout-api' }),
      log: say,
    });
    // stdout carries the address alone, for scripts: `url=$(fanout serve --port 0 | head -1)`.
    process.stdout.write(`${api.url}\n`);
    say(`serving the jobs API on ${api.url} (a local stand-in for API Gateway; Ctrl-C stops)`);
    say(`try: curl -s -X POST ${api.url}/jobs -H 'content-type: application/json' -d @job.json`);
    // From here on the handlers' own output (Powertools logs and metrics) goes to stderr, as with invoke.
    process.stdout.write = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    say('stopping: no new requests; waiting for jobs running here (Ctrl-C again to quit at once)');
    await api.close();
    const quit = (): void => process.exit(EXIT.INTERRUPTED);
    process.once('SIGINT', quit);
    await handlers.drain();
    process.off('SIGINT', quit);
  } finally {
    await opened.close();
  }
}
